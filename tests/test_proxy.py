"""
The pull-through cache over HTTP, with a real txregistry upstream on
loopback: manifests by tag and digest, blobs streamed while stored, the
cache answering when upstream is gone, pushes refused, and several
upstreams by prefix.  Real clients (skopeo, podman) are in
C{test_proxy_clients}.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from conftest import Registry, StartRegistry
from manifest_support import ACCEPT_ALL, OCI_MANIFEST, Images, assert_error
from support import sha256
from txregistry.testing.client import request


def _proxy_of(
    start_registry_with: Callable[..., Registry], upstream_url: str, **proxy: Any
) -> Registry:
    section = {"remoteurl": upstream_url, "checktimeout": "1s", **proxy}
    return start_registry_with({"proxy": section})


def _upstream_gets(upstream: Registry, path_part: str) -> int:
    """How many GETs of paths containing C{path_part} the upstream logged."""
    text = upstream.process.log_path.read_text(errors="replace")
    return sum(1 for line in text.splitlines() if '"GET ' in line and path_part in line)


@pytest.fixture
def upstream(start_registry: StartRegistry) -> Registry:
    return start_registry()


def _push_image(upstream: Registry, repo: str, tag: str, layers: int = 2) -> tuple[bytes, str]:
    images = Images(upstream, repo)
    manifest = images.image(OCI_MANIFEST, layers=layers)
    digest = images.push(tag, manifest, OCI_MANIFEST)
    return manifest, digest


def _layer_digests(manifest: bytes) -> list[str]:
    document = json.loads(manifest)
    return [document["config"]["digest"], *(layer["digest"] for layer in document["layers"])]


def test_pull_by_tag_then_from_cache_with_upstream_gone(
    upstream: Registry, start_registry_with: Callable[..., Registry]
) -> None:
    manifest, digest = _push_image(upstream, "library/app", "v1")
    blobs = {
        d: upstream.request("GET", f"library/app/blobs/{d}").body for d in _layer_digests(manifest)
    }
    proxy = _proxy_of(start_registry_with, upstream.url)

    got = proxy.request("GET", "library/app/manifests/v1", headers={"Accept": ACCEPT_ALL})
    assert got.status == 200, got.body
    assert got.body == manifest
    assert got.header("Docker-Content-Digest") == digest
    assert got.header("Content-Type") == OCI_MANIFEST
    for blob_digest, data in blobs.items():
        pulled = proxy.request("GET", f"library/app/blobs/{blob_digest}")
        assert pulled.status == 200
        assert pulled.body == data
        assert pulled.header("Docker-Content-Digest") == blob_digest
        assert proxy.blob_file(blob_digest).read_bytes() == data
    assert proxy.request("GET", "_catalog").json() == {"repositories": ["library/app"]}
    assert proxy.request("GET", "library/app/tags/list").json()["tags"] == ["v1"]

    upstream.process.stop()
    again = proxy.request("GET", "library/app/manifests/v1", headers={"Accept": ACCEPT_ALL})
    assert again.status == 200
    assert again.body == manifest
    assert (
        proxy.request(
            "HEAD", f"library/app/manifests/{digest}", headers={"Accept": ACCEPT_ALL}
        ).status
        == 200
    )
    for blob_digest, data in blobs.items():
        assert proxy.request("GET", f"library/app/blobs/{blob_digest}").body == data


def test_tag_follows_upstream(
    upstream: Registry, start_registry_with: Callable[..., Registry]
) -> None:
    _, first = _push_image(upstream, "app", "latest")
    proxy = _proxy_of(start_registry_with, upstream.url)
    assert (
        proxy.request("HEAD", "app/manifests/latest", headers={"Accept": ACCEPT_ALL}).header(
            "Docker-Content-Digest"
        )
        == first
    )
    _, second = _push_image(upstream, "app", "latest")
    got = proxy.request("GET", "app/manifests/latest", headers={"Accept": ACCEPT_ALL})
    assert got.header("Docker-Content-Digest") == second
    # The older manifest stays cached, by digest.
    assert (
        proxy.request("HEAD", f"app/manifests/{first}", headers={"Accept": ACCEPT_ALL}).status
        == 200
    )


def test_unknown_content_is_404(
    upstream: Registry, start_registry_with: Callable[..., Registry]
) -> None:
    proxy = _proxy_of(start_registry_with, upstream.url)
    assert_error(proxy.request("GET", "app/manifests/nope"), 404, "MANIFEST_UNKNOWN")
    missing = sha256(b"missing")
    assert_error(proxy.request("GET", f"app/manifests/{missing}"), 404, "MANIFEST_UNKNOWN")
    assert_error(proxy.request("GET", f"app/blobs/{missing}"), 404, "BLOB_UNKNOWN")
    assert proxy.request("HEAD", f"app/blobs/{missing}").status == 404


def test_upstream_unreachable_and_not_cached_is_503(
    upstream: Registry, start_registry_with: Callable[..., Registry]
) -> None:
    proxy = _proxy_of(start_registry_with, upstream.url)
    upstream.process.stop()
    missing = sha256(b"missing")
    for method, path in [
        ("GET", f"app/blobs/{missing}"),
        ("HEAD", f"app/blobs/{missing}"),
        ("GET", f"app/manifests/{missing}"),
    ]:
        response = request(method, proxy.resolve(path))
        assert response.status == 503, (method, path, response.body)
        if method == "GET":
            assert response.json()["errors"][0]["code"] == "UNAVAILABLE"
    # A tag upstream cannot vouch for and the cache does not know.
    assert_error(proxy.request("GET", "app/manifests/latest"), 404, "MANIFEST_UNKNOWN")


def test_writes_are_refused(
    upstream: Registry, start_registry_with: Callable[..., Registry]
) -> None:
    manifest, digest = _push_image(upstream, "app", "v1", layers=1)
    proxy = _proxy_of(start_registry_with, upstream.url)
    assert proxy.request("GET", "app/manifests/v1", headers={"Accept": ACCEPT_ALL}).status == 200
    data = b"pushed"
    for method, path, body in [
        ("POST", "app/blobs/uploads/", None),
        ("POST", f"app/blobs/uploads/?digest={sha256(data)}", data),
        ("PUT", "app/manifests/v2", manifest),
        ("DELETE", f"app/manifests/{digest}", None),
        ("DELETE", "app/manifests/v1", None),
        ("DELETE", f"app/blobs/{_layer_digests(manifest)[0]}", None),
    ]:
        headers = {"Content-Type": OCI_MANIFEST} if method == "PUT" else None
        assert_error(proxy.request(method, path, body, headers), 405, "UNSUPPORTED")
    assert (
        proxy.request("GET", f"app/manifests/{digest}", headers={"Accept": ACCEPT_ALL}).status
        == 200
    )


def test_blob_range_head_and_conditional_before_caching(
    upstream: Registry, start_registry_with: Callable[..., Registry]
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    digest = upstream.push("app", data)
    proxy = _proxy_of(start_registry_with, upstream.url)
    head = proxy.request("HEAD", f"app/blobs/{digest}")
    assert head.status == 200
    assert head.header("Content-Length") == str(len(data))
    assert not proxy.blob_file(digest).exists()  # a HEAD caches nothing
    unchanged = proxy.request(
        "GET", f"app/blobs/{digest}", headers={"If-None-Match": f'"{digest}"'}
    )
    assert unchanged.status == 304
    part = proxy.request("GET", f"app/blobs/{digest}", headers={"Range": "bytes=1000-1999999"})
    assert part.status == 206
    assert part.body == data[1000:2000000]
    assert part.header("Content-Range") == f"bytes 1000-1999999/{len(data)}"
    # The whole blob was downloaded and cached all the same.
    deadline = time.monotonic() + 10
    while not proxy.blob_file(digest).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.blob_file(digest).read_bytes() == data
    assert_error(
        proxy.request("GET", f"app/blobs/{digest}", headers={"Range": f"bytes={len(data)}-"}),
        416,
        "RANGE_INVALID",
    )


def test_concurrent_pulls_share_one_download(
    upstream: Registry, start_registry_with: Callable[..., Registry]
) -> None:
    data = os.urandom(32 * 1024 * 1024)
    digest = upstream.push("app", data)
    proxy = _proxy_of(start_registry_with, upstream.url)
    results: list[bytes] = []

    def pull() -> None:
        results.append(request("GET", proxy.resolve(f"app/blobs/{digest}")).body)

    threads = [threading.Thread(target=pull) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6
    assert all(sha256(result) == digest for result in results)
    assert _upstream_gets(upstream, f"/blobs/{digest}") == 1


def test_blob_cached_by_another_repository_is_linked_not_downloaded(
    upstream: Registry, start_registry_with: Callable[..., Registry]
) -> None:
    data = os.urandom(100_000)
    digest = upstream.push("one", data)
    assert upstream.push("two", data) == digest
    proxy = _proxy_of(start_registry_with, upstream.url)
    assert proxy.request("GET", f"one/blobs/{digest}").body == data
    assert proxy.request("GET", f"two/blobs/{digest}").body == data
    assert _upstream_gets(upstream, f"/blobs/{digest}") == 1
    assert proxy.link_file("two", digest).exists()
    # Upstream decides what a repository holds: not "three".
    assert_error(proxy.request("GET", f"three/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_upstreams_by_prefix(
    start_registry: StartRegistry, start_registry_with: Callable[..., Registry]
) -> None:
    default, other = start_registry(), start_registry()
    _, in_default = _push_image(default, "app", "v1", layers=1)
    _, in_other = _push_image(other, "team/app", "v1", layers=1)
    proxy = start_registry_with(
        {
            "proxy": {
                "remoteurl": default.url,
                "remotes": [{"prefix": "other", "remoteurl": other.url}],
            }
        }
    )
    assert (
        proxy.request("HEAD", "app/manifests/v1", headers={"Accept": ACCEPT_ALL}).header(
            "Docker-Content-Digest"
        )
        == in_default
    )
    got = proxy.request("HEAD", "other/team/app/manifests/v1", headers={"Accept": ACCEPT_ALL})
    assert got.header("Docker-Content-Digest") == in_other
    assert proxy.request("HEAD", "team/app/manifests/v1").status == 404


class _WrongBlob(BaseHTTPRequestHandler):
    """An upstream that answers every blob with bytes of another digest."""

    body = b"not what was asked for" * 1000

    def do_GET(self) -> None:
        if self.path == "/v2/":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def wrong_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WrongBlob)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_blob_not_matching_its_digest_is_not_cached_nor_served_whole(
    wrong_upstream: str, start_registry_with: Callable[..., Registry], tmp_path: Path
) -> None:
    proxy = _proxy_of(start_registry_with, wrong_upstream)
    digest = sha256(b"the real content")
    try:
        response = request("GET", proxy.resolve(f"app/blobs/{digest}"))
    except Exception:
        response = None  # the connection was cut: the client saw a short body
    if response is not None:
        assert response.status >= 400 or len(response.body) < len(_WrongBlob.body)
    assert not proxy.blob_file(digest).exists()
    deadline = time.monotonic() + 10
    while proxy.upload_entries("app") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.upload_entries("app") == []


def test_expiry_removes_cached_content_and_the_cache_fetches_it_again(
    upstream: Registry, start_registry_with: Callable[..., Registry]
) -> None:
    manifest, digest = _push_image(upstream, "app", "v1", layers=1)
    layer = _layer_digests(manifest)[1]
    proxy = _proxy_of(start_registry_with, upstream.url, ttl="2s")
    assert proxy.request("GET", "app/manifests/v1", headers={"Accept": ACCEPT_ALL}).status == 200
    assert proxy.request("GET", f"app/blobs/{layer}").status == 200
    assert proxy.blob_file(layer).exists()
    state = proxy.root / "scheduler-state.json"
    deadline = time.monotonic() + 20
    while proxy.blob_file(layer).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not proxy.blob_file(layer).exists()
    assert not proxy.link_file("app", layer).exists()
    while not (state.exists() and json.loads(state.read_text()) == {}):
        assert time.monotonic() < deadline, "the expiry state was not saved"
        time.sleep(0.1)
    assert state.exists() and json.loads(state.read_text()) == {}
    # Pulled again, cached again.
    assert proxy.request("GET", f"app/blobs/{layer}").status == 200
    assert (
        proxy.request("HEAD", f"app/manifests/{digest}", headers={"Accept": ACCEPT_ALL}).status
        == 200
    )


def _streamed_digest(url: str, sizes: list[int]) -> str:
    """GET C{url}, hashing the body as it comes: its sha256 (its length in C{sizes})."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=120)
    try:
        connection.request("GET", parts.path)
        response = connection.getresponse()
        assert response.status == 200, response.status
        hasher = hashlib.sha256()
        total = 0
        while chunk := response.read(1024 * 1024):
            hasher.update(chunk)
            total += len(chunk)
        sizes.append(total)
        return "sha256:" + hasher.hexdigest()
    finally:
        connection.close()


def test_ten_clients_share_one_download_of_a_256_mib_blob(
    upstream: Registry, start_registry_with: Callable[..., Registry]
) -> None:
    """The issue's bar: upstream serves it once, each client gets it whole."""
    size = 256 * 1024 * 1024
    block = os.urandom(1024 * 1024)

    def chunks() -> Iterator[bytes]:
        for index in range(size // len(block)):
            yield index.to_bytes(8, "big") + block[8:]

    hasher = hashlib.sha256()
    for chunk in chunks():
        hasher.update(chunk)
    digest = "sha256:" + hasher.hexdigest()
    pushed = upstream.request(
        "POST",
        f"big/blobs/uploads/?digest={digest}",
        chunks(),
        {"Content-Length": str(size)},
        timeout=300,
    )
    assert pushed.status == 201, pushed.body
    proxy = _proxy_of(start_registry_with, upstream.url)
    url = proxy.resolve(f"big/blobs/{digest}")
    digests: list[str] = []
    sizes: list[int] = []
    errors: list[BaseException] = []

    def pull() -> None:
        try:
            digests.append(_streamed_digest(url, sizes))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=pull) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert errors == []
    assert digests == [digest] * 10
    assert sizes == [size] * 10
    assert _upstream_gets(upstream, f"/blobs/{digest}") == 1
    assert proxy.upload_entries("big") == []
    assert proxy.blob_file(digest).stat().st_size == size


def test_tag_answered_from_cache_when_upstream_hangs(
    upstream: Registry, start_registry_with: Callable[..., Registry]
) -> None:
    manifest, digest = _push_image(upstream, "app", "v1", layers=1)
    proxy = _proxy_of(start_registry_with, upstream.url)
    assert proxy.request("GET", "app/manifests/v1", headers={"Accept": ACCEPT_ALL}).status == 200
    assert upstream.process.process is not None
    pid = upstream.process.process.pid
    os.kill(pid, signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        started = time.monotonic()
        got = proxy.request("GET", "app/manifests/v1", headers={"Accept": ACCEPT_ALL})
        waited = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert got.status == 200
    assert got.body == manifest
    assert got.header("Docker-Content-Digest") == digest
    assert waited < 10  # checktimeout is 1s; the client waits no longer than that and a bit


class _RateLimited(BaseHTTPRequestHandler):
    """An upstream with one image, which may start answering 429 to everything."""

    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": sha256(b"{}"),
                "size": 2,
            },
            "layers": [],
        }
    ).encode()
    limited = False

    def _answer(self, body: bool) -> None:
        if type(self).limited:
            content = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
            self.send_response(429)
        elif self.path == "/v2/":
            content = b"{}"
            self.send_response(200)
        elif self.path.startswith("/v2/app/manifests/"):
            content = self.manifest
            self.send_response(200)
            self.send_header("Content-Type", OCI_MANIFEST)
            self.send_header("Docker-Content-Digest", sha256(content))
        else:
            content = b'{"errors":[{"code":"NOT_FOUND"}]}'
            self.send_response(404)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if body:
            self.wfile.write(content)

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_tag_answered_from_cache_when_upstream_refuses(
    start_registry_with: Callable[..., Registry],
) -> None:
    handler = type("Limited", (_RateLimited,), {"limited": False})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proxy = _proxy_of(start_registry_with, f"http://127.0.0.1:{server.server_address[1]}")
        first = proxy.request("GET", "app/manifests/v1", headers={"Accept": ACCEPT_ALL})
        assert first.status == 200
        assert first.body == _RateLimited.manifest
        handler.limited = True
        again = proxy.request("GET", "app/manifests/v1", headers={"Accept": ACCEPT_ALL})
        assert again.status == 200
        assert again.body == _RateLimited.manifest
        # Nothing cached for this one: the client hears why.
        response = request("GET", proxy.resolve("app/manifests/other"))
        assert_error(response, 404, "MANIFEST_UNKNOWN")
        response = request("GET", proxy.resolve(f"app/blobs/{sha256(b'x')}"))
        assert response.status == 503
        assert "429" in response.json()["errors"][0]["message"] + json.dumps(response.json())
    finally:
        server.shutdown()
        server.server_close()


def test_expiry_survives_a_restart(
    upstream: Registry, start_registry_with: Callable[..., Registry]
) -> None:
    data = os.urandom(1000)
    digest = upstream.push("app", data)
    proxy = _proxy_of(start_registry_with, upstream.url, ttl="4s")
    assert proxy.request("GET", f"app/blobs/{digest}").body == data
    proxy.process.stop()  # saves the schedule
    state = json.loads((proxy.root / "scheduler-state.json").read_text())
    assert list(state) == [f"app@{digest}"]
    assert proxy.blob_file(digest).exists()
    time.sleep(4.5)
    restarted = start_registry_with(
        {"proxy": {"remoteurl": upstream.url, "ttl": "4s"}}, root=proxy.root
    )
    deadline = time.monotonic() + 15
    while restarted.blob_file(digest).exists():
        assert time.monotonic() < deadline, "the expired blob is still there"
        time.sleep(0.1)
    assert not restarted.link_file("app", digest).exists()


def test_tags_listed_upstream_else_from_cache(
    upstream: Registry, start_registry_with: Callable[..., Registry]
) -> None:
    _push_image(upstream, "app", "v1", layers=1)
    _push_image(upstream, "app", "v2", layers=1)
    proxy = _proxy_of(start_registry_with, upstream.url)
    assert proxy.request("GET", "app/tags/list").json() == {"name": "app", "tags": ["v1", "v2"]}
    assert proxy.request("HEAD", "app/manifests/v2", headers={"Accept": ACCEPT_ALL}).status == 200
    paged = proxy.request("GET", "app/tags/list?n=1")
    assert paged.json()["tags"] == ["v1"]
    assert paged.header("Link") is not None
    assert_error(proxy.request("GET", "other/tags/list"), 404, "NAME_UNKNOWN")
    upstream.process.stop()
    assert proxy.request("GET", "app/tags/list").json() == {"name": "app", "tags": ["v2"]}
