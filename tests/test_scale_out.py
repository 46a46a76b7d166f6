"""
Scale-out, as DESIGN.md's "Scale-out" section has it: two txregistry
processes that share nothing but storage, an S3 bucket (moto's S3 server on
127.0.0.1, L{txregistry.testing.s3server}), and the same C{http.secret},
behind nginx balancing round-robin (L{txregistry.testing.nginx}).

  - nginx really alternates between the two, whatever connection the
    requests come on (and the harness says what is missing or wrong);
  - skopeo pushes an image through nginx and pulls it back, by tag and by
    digest, with blob downloads redirected to the bucket (the default) and
    served by the registries themselves (C{storage.redirect.disable});
  - an upload started on one process is continued and finished on the
    other, with the C{Location} the first one handed out; one sent
    through nginx, its chunks streamed, moves at every request;
  - what one process stores or removes (a manifest, a tag, a new tag
    target, a deletion, a cancelled upload) the other sees at once;
  - both processes committing the same blob at the same moment both
    succeed;
  - while the bucket hangs, both answer 503 UNAVAILABLE through nginx,
    and serve again once it is back.

Each test has its own pair of processes and nginx, over a root directory
of its own in the module's bucket; a process that logs a traceback fails
the test (the C{start_registry_with} fixture).  nginx, moto and skopeo
are never skipped: a missing one fails the test, naming what to install.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from clients import Clients, ImageSet, Target, same_image
from conftest import Registry
from manifest_support import Images
from support import sha256
from txregistry.registry.manifest_formats import OCI_MANIFEST
from txregistry.testing.client import HTTPResponse, request
from txregistry.testing.nginx import NginxProcess
from txregistry.testing.redisserver import RedisServerProcess
from txregistry.testing.s3server import S3ServerProcess

BUCKET = "scale-out"
MiB = 1024 * 1024


# -- the cluster -----------------------------------------------------------------------


@dataclass
class Cluster:
    """
    Two registry processes, C{a} and C{b}, over one root directory of the
    bucket, and nginx in front of them.
    """

    a: Registry
    b: Registry
    balancer: NginxProcess
    s3: S3ServerProcess
    rootdirectory: str

    def upstream(self, registry: Registry) -> str:
        """C{127.0.0.1:PORT} of C{registry}, as nginx's log names it."""
        return urlsplit(registry.url).netloc

    def keys(self, below: str) -> list[str]:
        """The bucket's keys below C{below}, a path of Distribution's layout."""
        return self.s3.keys(BUCKET, f"{self.rootdirectory.strip('/')}/docker/registry/v2/{below}")


class BalancedTarget(Target):
    """
    The cluster as the client helpers of L{clients} see a registry: its
    host is nginx's; when a command fails they show nginx's access log
    since the command started (it names the process that answered each
    request) and the end of both registries' logs.  It has no process of
    its own, so L{Target.__init__} is not called.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.kind = "txregistry behind nginx"
        self.cluster = cluster

    @property
    def host(self) -> str:
        return self.cluster.balancer.host

    def log_mark(self) -> int:
        return self.cluster.balancer.log_mark()

    def log_since(self, mark: int, lines: int = 60) -> str:
        entries = self.cluster.balancer.log_entries(mark)[-lines:]
        text = "--- nginx: method, URI, status, upstream ---\n"
        text += "\n".join(f"{e.method} {e.uri} {e.status} {e.upstream}" for e in entries)
        for registry in (self.cluster.a, self.cluster.b):
            tail = registry.process.output().splitlines()[-lines:]
            text += f"\n--- {registry.process.name} ({registry.url}) ---\n" + "\n".join(tail)
        return text

    def log_problems(self, mark: int = 0) -> list[str]:
        # The registries' own fixture fails the test on their problems.
        return []


@pytest.fixture(scope="module")
def s3(s3_server: S3ServerProcess) -> S3ServerProcess:
    """The session's S3 server, with the bucket this module's clusters share."""
    s3_server.create_bucket(BUCKET)
    return s3_server


@pytest.fixture
def cluster(
    request: pytest.FixtureRequest,
    s3: S3ServerProcess,
    start_registry_with: Callable[..., Registry],
    tmp_path: Path,
) -> Iterator[Cluster]:
    """
    Two processes over a new root directory of the bucket, with the same
    secret (the fixture's), and nginx in front of them.  Parametrized
    indirectly, the parameter adds to the C{storage} section; its C{s3}
    entry adds to the driver's parameters, and C{redis: True} gives both
    the session's Redis as their descriptor cache.
    """
    rootdirectory = f"/clusters/{uuid.uuid4().hex[:12]}"
    more = dict(getattr(request, "param", {}))
    redis = more.pop("redis", False)
    storage: dict[str, Any] = {
        **s3.storage_parameters(BUCKET, rootdirectory, **more.pop("s3", {})),
        "delete": {"enabled": True},
        **more,
    }
    sections: dict[str, Any] = {"storage": storage}
    if redis:
        server: RedisServerProcess = request.getfixturevalue("redis_server")
        storage["cache"] = {"blobdescriptor": "redis"}
        sections["redis"] = {"addr": server.addr}
    a = start_registry_with(sections)
    b = start_registry_with(sections)
    with NginxProcess(tmp_path / "nginx", [a.url, b.url]) as balancer:
        yield Cluster(a, b, balancer, s3, rootdirectory)


def blob_response(registry: Registry, repo: str, digest: str, method: str = "GET") -> HTTPResponse:
    """
    C{GET} or C{HEAD} a blob from C{registry}, following a redirect to the
    bucket (a presigned URL of the S3 server, as Distribution's s3 driver
    hands out unless C{storage.redirect.disable}); the final answer, a 200.
    """
    response = registry.request(method, f"{repo}/blobs/{digest}")
    if response.status == 307:
        location = response.header("Location") or ""
        endpoint = (registry.process.config or {})["storage"]["s3"]["regionendpoint"]
        assert location.startswith(f"{endpoint}/{BUCKET}/"), location
        response = request(method, location)
    else:
        assert response.header("Docker-Content-Digest") == digest
    assert response.status == 200, (response.status, response.body[:500])
    return response


def with_query(location: str, **arguments: str) -> str:
    """C{location} with C{arguments} added to its query."""
    return f"{location}{'&' if '?' in location else '?'}{urlencode(arguments)}"


# -- nginx -------------------------------------------------------------------------------


def test_nginx_alternates_between_the_processes(cluster: Cluster) -> None:
    """
    Consecutive requests on one kept-alive client connection go to one
    process, then the other, in turn: nginx's log says so, and each
    process's own access log counts its half.
    """
    mark = cluster.balancer.log_mark()
    marks = [registry.log_size() for registry in (cluster.a, cluster.b)]
    connection = http.client.HTTPConnection("127.0.0.1", cluster.balancer.port, timeout=30)
    try:
        for _ in range(6):
            connection.request("GET", "/v2/")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            assert response.getheader("Docker-Distribution-API-Version") == "registry/2.0"
    finally:
        connection.close()
    upstreams = [entry.upstream for entry in cluster.balancer.log_entries(mark, at_least=6)]
    assert len(upstreams) == 6, upstreams
    assert set(upstreams) == {cluster.upstream(cluster.a), cluster.upstream(cluster.b)}
    assert all(first != second for first, second in pairwise(upstreams)), upstreams
    for registry, since in zip((cluster.a, cluster.b), marks, strict=True):
        with open(registry.process.log_path, "rb") as log:
            log.seek(since)
            logged = log.read().decode("utf-8", "replace")
        assert logged.count('"GET /v2/ HTTP/1.1" 200') == 3, logged


def test_nginx_harness_says_what_is_missing(tmp_path: Path) -> None:
    """
    Without nginx the harness fails naming the package; an upstream that
    is not C{http://HOST:PORT} is refused; a config nginx rejects fails
    the start with nginx's own words.
    """
    missing = NginxProcess(tmp_path / "missing", ["http://127.0.0.1:1"], binary="/no/nginx")
    with pytest.raises(RuntimeError, match=r"apt-get install nginx-light"):
        missing.start()
    for upstream in ("https://127.0.0.1:1", "http://127.0.0.1", "http://127.0.0.1:1/v2/"):
        with pytest.raises(ValueError, match="upstream"):
            NginxProcess(tmp_path / "bad", [upstream])
    rejected = NginxProcess(tmp_path / "rejected", ["http://127.0.0.1:1"], timeout=-1)
    with pytest.raises(RuntimeError, match=r"nginx exited with 1:\n(.|\n)*proxy_read_timeout"):
        rejected.start()


# -- a real client ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cluster", [{}, {"redirect": {"disable": True}}], ids=["redirected", "proxied"], indirect=True
)
def test_skopeo_push_and_pull_through_nginx(
    cluster: Cluster, clients: Clients, images: ImageSet, repo: str, tmp_path: Path
) -> None:
    """
    skopeo pushes an image through nginx and pulls it back, by tag and by
    digest, with the same manifest, config and layers; both processes
    answered part of the requests.
    """
    target = BalancedTarget(cluster)
    clients.allow(target)
    mark = cluster.balancer.log_mark()
    digest = clients.push(target, images.layout, "single", f"{repo}:v1")
    assert digest == images.single.digest
    pulled = clients.pull(target, f"{repo}:v1", tmp_path / "pulled", "by-tag")
    same_image(pulled, images.single)
    pulled = clients.pull(target, f"{repo}@{digest}", tmp_path / "pulled", "by-digest")
    same_image(pulled, images.single)

    # nginx answers skopeo's TLS probe itself (400, no upstream).
    entries = cluster.balancer.log_entries(mark)
    served = Counter(entry.upstream for entry in entries if entry.upstream)
    assert set(served) == {cluster.upstream(cluster.a), cluster.upstream(cluster.b)}, served
    # Pushed and pulled through nginx, the blobs are where both see them.
    for blob in [images.single.config.digest, *images.single.layer_digests]:
        for registry in (cluster.a, cluster.b):
            blob_response(registry, repo, blob, "HEAD")


# -- uploads across processes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [(40_000, 30_001), (5 * MiB + 7, MiB + 3)],
    ids=["small", "over-one-part"],
)
def test_upload_started_on_one_process_finished_on_the_other(
    cluster: Cluster, repo: str, first: int, second: int
) -> None:
    """
    An upload started on A (C{POST}, then a first C{PATCH}) is continued
    on B (its status, a second C{PATCH}) and finished there (C{PUT
    ?digest=}), with the C{Location} each answer handed out, as a client
    behind a load balancer does; the blob is then served by both, and the
    upload leaves nothing behind in the bucket.  The larger first chunk is
    over S3's smallest multipart part, so B continues it by copying it
    into a new multipart upload rather than reading it back.
    """
    a, b = cluster.a, cluster.b
    data = os.urandom(first + second)
    digest = sha256(data)

    location = a.start_upload(repo).header("Location")
    assert location is not None
    response = a.request(
        "PATCH",
        location,
        data[:first],
        {"Content-Range": f"0-{first - 1}", "Content-Type": "application/octet-stream"},
    )
    assert response.status == 202, response.body
    assert response.header("Range") == f"0-{first - 1}"
    location = response.header("Location")
    assert location is not None
    upload_id = response.header("Docker-Upload-UUID")

    status = b.request("GET", location)
    assert status.status == 204, status.body
    assert status.header("Range") == f"0-{first - 1}"
    assert status.header("Docker-Upload-UUID") == upload_id

    response = b.request(
        "PATCH",
        location,
        data[first:],
        {
            "Content-Range": f"{first}-{len(data) - 1}",
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status == 202, response.body
    assert response.header("Range") == f"0-{len(data) - 1}"
    location = response.header("Location")
    assert location is not None

    done = b.request("PUT", with_query(location, digest=digest))
    assert done.status == 201, done.body
    assert done.header("Docker-Content-Digest") == digest
    assert urlsplit(done.header("Location") or "").path == f"/v2/{repo}/blobs/{digest}"

    for registry in (a, b):
        head = blob_response(registry, repo, digest, "HEAD")
        assert head.header("Content-Length") == str(len(data))
        served = blob_response(registry, repo, digest).body
        assert len(served) == len(data) and sha256(served) == digest
    assert cluster.keys(f"repositories/{repo}/_uploads/") == []


def test_streamed_upload_through_nginx_alternates(cluster: Cluster, repo: str) -> None:
    """
    An upload sent through nginx, each chunk streamed (chunked transfer
    encoding, as nginx passes it on unbuffered), lands on the other
    process at every request: POST, three PATCHes and a PUT carrying the
    last chunk.  Every C{Location} points back at nginx, and the blob is
    whole.
    """
    sizes = [300_001, MiB + 5, 64, 200_000]
    data = os.urandom(sum(sizes) + 70_000)
    digest = sha256(data)
    mark = cluster.balancer.log_mark()

    def streamed(chunk: bytes) -> Iterator[bytes]:
        for start in range(0, len(chunk), 65_536):
            yield chunk[start : start + 65_536]

    started = request("POST", f"{cluster.balancer.url}/v2/{repo}/blobs/uploads/")
    assert started.status == 202, started.body
    location = started.header("Location") or ""
    offset = 0
    for size in sizes:
        assert urlsplit(location).netloc == cluster.balancer.host, location
        chunk = data[offset : offset + size]
        response = request("PATCH", location, streamed(chunk))
        assert response.status == 202, response.body
        offset += size
        assert response.header("Range") == f"0-{offset - 1}"
        location = response.header("Location") or ""
    done = request("PUT", with_query(location, digest=digest), streamed(data[offset:]))
    assert done.status == 201, done.body
    assert done.header("Docker-Content-Digest") == digest

    entries = cluster.balancer.log_entries(mark, at_least=len(sizes) + 2)
    assert [entry.method for entry in entries] == ["POST"] + ["PATCH"] * len(sizes) + ["PUT"]
    upstreams = [entry.upstream for entry in entries]
    assert all(first != second for first, second in pairwise(upstreams)), upstreams
    for registry in (cluster.a, cluster.b):
        assert sha256(blob_response(registry, repo, digest).body) == digest


def test_cancel_and_delete_seen_by_the_other_at_once(cluster: Cluster, repo: str) -> None:
    """
    An upload started on A and cancelled on B is unknown to A at once; a
    blob deleted on B is unknown to A at once.
    """
    a, b = cluster.a, cluster.b
    location = a.start_upload(repo).header("Location") or ""
    response = a.request("PATCH", location, b"some bytes")
    assert response.status == 202, response.body
    location = response.header("Location") or ""
    assert b.request("DELETE", location).status == 204
    for method, body in (("GET", None), ("PATCH", b"more"), ("PUT", b"")):
        target = location if method != "PUT" else with_query(location, digest=sha256(b"x"))
        gone = a.request(method, target, body)
        assert gone.status == 404, (method, gone.body)
        assert gone.error_codes() == ["BLOB_UPLOAD_UNKNOWN"]
    assert cluster.keys(f"repositories/{repo}/_uploads/") == []

    digest = a.push(repo, os.urandom(10_000))
    blob_response(b, repo, digest, "HEAD")
    assert b.request("DELETE", f"{repo}/blobs/{digest}").status == 202
    gone = a.request("GET", f"{repo}/blobs/{digest}")
    assert gone.status == 404, gone.body
    assert gone.error_codes() == ["BLOB_UNKNOWN"]


@pytest.mark.parametrize("cluster", [{"redis": True}], ids=["redis"], indirect=True)
def test_redis_cache_delete_seen_by_the_other_at_once(
    cluster: Cluster, repo: str, redis_server: RedisServerProcess
) -> None:
    """
    With one Redis as both processes' descriptor cache: what one looked up
    is cached for both (Distribution's keys), and a blob or a manifest
    deleted through one is unknown through the other at once, though both
    had it cached.
    """
    a, b = cluster.a, cluster.b
    on_a, on_b = Images(a, repo), Images(b, repo)
    layer = a.push(repo, os.urandom(10_000))
    manifest = on_a.image(layers=1)
    digest = on_a.push("v1", manifest)
    for registry, images in ((a, on_a), (b, on_b)):
        blob_response(registry, repo, layer, "HEAD")
        assert images.get(digest).status == 200
    assert redis_server.command("SISMEMBER", f"repository::{repo}::blobs", layer) == 1
    assert f"txregistry::repository::{repo}::revisions::{digest}" in redis_server.keys(
        f"txregistry::repository::{repo}::*"
    )

    assert b.request("DELETE", f"{repo}/blobs/{layer}").status == 202
    gone = a.request("HEAD", f"{repo}/blobs/{layer}")
    assert gone.status == 404
    assert on_a.delete(digest).status == 202
    gone = on_b.get(digest)
    assert gone.status == 404, gone.body
    assert gone.error_codes() == ["MANIFEST_UNKNOWN"]


# -- an outage of the bucket --------------------------------------------------------------------


@pytest.mark.parametrize(
    "cluster",
    [{"s3": {"connecttimeout": 1, "readtimeout": 1, "maxretries": 0}}],
    ids=["short-timeouts"],
    indirect=True,
)
def test_bucket_outage_through_nginx(cluster: Cluster, repo: str) -> None:
    """
    While the bucket accepts connections and answers nothing, both
    processes answer 503 UNAVAILABLE (within their driver's timeouts, well
    before nginx gives up); once it is back, both serve again.
    """
    digest = cluster.a.push(repo, os.urandom(10_000))
    mark = cluster.balancer.log_mark()
    cluster.s3.pause()
    try:
        for _ in range(2):
            started = time.monotonic()
            response = request("GET", f"{cluster.balancer.url}/v2/{repo}/manifests/v1")
            assert time.monotonic() - started < 15
            assert response.status == 503, response.body
            assert response.error_codes() == ["UNAVAILABLE"]
    finally:
        cluster.s3.resume()
    for _ in range(2):
        response = request("HEAD", f"{cluster.balancer.url}/v2/{repo}/blobs/{digest}")
        assert response.status in (200, 307), response.status
    upstreams = [entry.upstream for entry in cluster.balancer.log_entries(mark, at_least=4)]
    assert (
        set(upstreams[:2])
        == set(upstreams[2:])
        == {
            cluster.upstream(cluster.a),
            cluster.upstream(cluster.b),
        }
    ), upstreams


# -- what one stores, the other serves ----------------------------------------------------------


def test_manifest_pushed_on_one_process_pulled_from_the_other(cluster: Cluster, repo: str) -> None:
    """
    A manifest pushed to A is served by B at once, by tag and by digest,
    and listed among B's tags; the tag moved on A moves on B at once; a
    manifest deleted on B is gone on A at once.
    """
    on_a, on_b = Images(cluster.a, repo), Images(cluster.b, repo)
    manifest = on_a.image(layers=2)
    digest = on_a.push("v1", manifest)
    assert digest == sha256(manifest)

    for reference in ("v1", digest):
        response = on_b.get(reference)
        assert response.status == 200, response.body
        assert response.body == manifest
        assert response.header("Docker-Content-Digest") == digest
        assert response.header("Content-Type") == OCI_MANIFEST
    tags = on_b.tags()
    assert tags.status == 200, tags.body
    assert tags.json() == {"name": repo, "tags": ["v1"]}

    newer = on_a.image(layers=1)
    newer_digest = on_a.push("v1", newer)
    response = on_b.get("v1")
    assert response.status == 200, response.body
    assert response.header("Docker-Content-Digest") == newer_digest
    assert response.body == newer
    assert on_b.get(digest).body == manifest

    assert on_b.delete(newer_digest).status == 202
    for reference in (newer_digest, "v1"):
        gone = on_a.get(reference)
        assert gone.status == 404, gone.body
        assert gone.error_codes() == ["MANIFEST_UNKNOWN"]
    assert on_a.get(digest).status == 200


def test_same_blob_committed_on_both_at_once(cluster: Cluster, repo: str) -> None:
    """
    The two processes storing the same blob at the same moment (each a
    monolithic C{POST ?digest=}) both succeed, and the blob is whole.
    """
    for round_number in range(3):
        data = os.urandom(2 * MiB + round_number)
        digest = sha256(data)

        def push(registry: Registry, data: bytes = data) -> str:
            return registry.push(repo, data)

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(push, (cluster.a, cluster.b)))
        assert results == [digest, digest]
        for registry in (cluster.a, cluster.b):
            assert sha256(blob_response(registry, repo, digest).body) == digest
