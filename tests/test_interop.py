"""
Interoperability with the reference registry, Distribution 2.8
(C{docker-registry}), over one filesystem root: what one writes, the other
serves; an upload one starts, the other finishes; both lay out the same
bytes on disk.

Both registries run as real processes on 127.0.0.1.  These tests need
C{docker-registry} and fail, rather than skip, without it.

What we found about continuing uploads across the two (both configured with
the same C{http.secret}):
  - Distribution requires its C{_state} query parameter on every request to
    an upload URL, and answers a bare upload URL with 404
    BLOB_UPLOAD_INVALID;
  - txregistry accepts a bare upload URL (the upload's state is in storage);
  - both sign C{_state} the same way (HMAC-SHA256 of the same JSON, padded
    URL-safe base64), so each accepts the other's C{_state}, and a client
    can follow the Location headers from one to the other freely.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from clients import require
from manifest_support import Images
from txregistry.cache.redis import NEAR_TTL, REVISION_TTL
from txregistry.testing.client import HTTPResponse, request
from txregistry.testing.process import REFERENCE_BINARY, RegistryProcess, base_config
from txregistry.testing.redisserver import RedisServerProcess
from txregistry.testing.s3server import S3ServerProcess

SECRET = "interop-secret"
CHUNK = 1024 * 1024
BLOB_SIZE = 3 * CHUNK + 12345
V2 = "docker/registry/v2"


@pytest.fixture(scope="module", autouse=True)
def _reference_installed() -> None:
    require(REFERENCE_BINARY)


@pytest.fixture(scope="module")
def blob() -> bytes:
    """A few MiB of random bytes, not a whole number of chunks."""
    return os.urandom(BLOB_SIZE)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Side:
    """One registry (txregistry or the reference) over a storage root."""

    def __init__(
        self,
        kind: str,
        root: Path,
        workdir: Path,
        storage: dict[str, Any] | None = None,
        sections: dict[str, Any] | None = None,
    ) -> None:
        self.kind = kind
        self.root = root
        config = base_config(root, http={"addr": "127.0.0.1:0", "secret": SECRET})
        if storage is not None:
            config["storage"] = storage
        config.update(sections or {})
        self.process = RegistryProcess(
            workdir / kind, config, reference=kind == "reference", name=kind
        )

    def start(self) -> Side:
        self.process.start()
        return self

    def stop(self) -> None:
        self.process.stop()
        if self.kind == "txregistry":
            output = self.process.output()
            assert "Traceback" not in output and "Unhandled" not in output, output

    def url(self, target: str) -> str:
        """
        A URL on this side for C{target}: a path below C{/v2/}, or a
        Location header from either side (its host replaced by this one's).
        """
        if target.startswith("http://") or target.startswith("/"):
            parts = urlsplit(target)
            query = f"?{parts.query}" if parts.query else ""
            return f"{self.process.url}{parts.path}{query}"
        return f"{self.process.url}/v2/{target}"

    def request(
        self,
        method: str,
        target: str,
        body: bytes | Iterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HTTPResponse:
        response = request(method, self.url(target), body, headers)
        assert response.status < 500, (self.kind, method, target, response.status, response.body)
        return response

    # -- uploads ---------------------------------------------------------------

    def start_upload(self, repository: str) -> str:
        """C{POST}: a new upload's Location."""
        response = self.request("POST", f"{repository}/blobs/uploads/")
        assert response.status == 202, (self.kind, response.status, response.body)
        location = response.header("Location")
        assert location
        return location

    def patch(self, location: str, data: bytes) -> str:
        """One chunked-encoded C{PATCH} of C{data}; the next Location."""
        chunks = iter([data[i : i + 256 * 1024] for i in range(0, len(data), 256 * 1024)])
        response = self.request("PATCH", location, chunks)
        assert response.status == 202, (self.kind, response.status, response.body)
        next_location = response.header("Location")
        assert next_location
        return next_location

    def commit(self, location: str, digest: str) -> HTTPResponse:
        """C{PUT ?digest=} with no body."""
        separator = "&" if "?" in location else "?"
        response = self.request("PUT", f"{location}{separator}digest={digest}")
        assert response.status == 201, (self.kind, response.status, response.body)
        assert response.header("Docker-Content-Digest") == digest
        return response

    def push(self, repository: str, data: bytes) -> str:
        """Upload C{data} in two chunked PATCHes, then commit it."""
        location = self.start_upload(repository)
        location = self.patch(location, data[: 2 * CHUNK])
        location = self.patch(location, data[2 * CHUNK :])
        digest = digest_of(data)
        self.commit(location, digest)
        return digest

    # -- serving -----------------------------------------------------------------

    def assert_serves(self, repository: str, data: bytes) -> None:
        """C{HEAD} and C{GET} answer the blob, byte for byte."""
        digest = digest_of(data)
        target = f"{repository}/blobs/{digest}"
        head = self.request("HEAD", target)
        assert head.status == 200, (self.kind, head.status)
        assert head.header("Docker-Content-Digest") == digest
        assert head.header("Content-Length") == str(len(data))
        assert head.body == b""
        get = self.request("GET", target)
        assert get.status == 200, (self.kind, get.status)
        assert get.header("Docker-Content-Digest") == digest
        assert get.header("Content-Length") == str(len(data))
        assert get.body == data

    def mount(self, repository: str, source: str, digest: str) -> None:
        """A cross-repository mount that must succeed (201)."""
        response = self.request("POST", f"{repository}/blobs/uploads/?mount={digest}&from={source}")
        assert response.status == 201, (self.kind, response.status, response.body)
        assert response.header("Docker-Content-Digest") == digest
        assert (
            urlsplit(response.header("Location") or "").path == f"/v2/{repository}/blobs/{digest}"
        )


def layer_link(root: Path, repository: str, digest: str) -> Path:
    algorithm, hex_digest = digest.split(":")
    return root / V2 / "repositories" / repository / "_layers" / algorithm / hex_digest / "link"


def blob_data(root: Path, digest: str) -> Path:
    algorithm, hex_digest = digest.split(":")
    return root / V2 / "blobs" / algorithm / hex_digest[:2] / hex_digest / "data"


def assert_stored(root: Path, repository: str, data: bytes) -> None:
    """The blob and its link, as Distribution lays them out."""
    digest = digest_of(data)
    assert layer_link(root, repository, digest).read_bytes() == digest.encode("ascii")
    assert blob_data(root, digest).read_bytes() == data


def tree(root: Path) -> dict[str, bytes | None]:
    """Every folder (L{None}) and file (its bytes) below C{root}'s C{docker/} folder."""
    found: dict[str, bytes | None] = {}
    for path in sorted((root / "docker").rglob("*")):
        found[str(path.relative_to(root))] = None if path.is_dir() else path.read_bytes()
    return found


# -- (a), (b), (c): one writes, the other serves and mounts --------------------


@pytest.mark.parametrize(
    ("writer", "reader"), [("reference", "txregistry"), ("txregistry", "reference")]
)
def test_one_writes_the_other_serves(tmp_path: Path, blob: bytes, writer: str, reader: str) -> None:
    """
    A blob pushed to one registry (chunked PATCHes, then PUT) is served by
    the other, started afterwards over the same root, with the same bytes
    and Docker-Content-Digest; the other mounts it into another repository
    and serves it from there.
    """
    root = tmp_path / "root"
    first = Side(writer, root, tmp_path).start()
    try:
        digest = first.push("interop/pushed", blob)
        first.assert_serves("interop/pushed", blob)
    finally:
        first.stop()
    assert_stored(root, "interop/pushed", blob)

    second = Side(reader, root, tmp_path).start()
    try:
        second.assert_serves("interop/pushed", blob)
        assert second.request("HEAD", f"interop/other/blobs/{digest}").status == 404
        second.mount("interop/other", "interop/pushed", digest)
        second.assert_serves("interop/other", blob)
    finally:
        second.stop()
    assert_stored(root, "interop/other", blob)


# -- (d): an upload started on one, finished on the other -----------------------


@pytest.fixture
def both(tmp_path: Path) -> Iterator[tuple[Side, Side]]:
    """Both registries at once, over one root, with one secret."""
    yield from _both(tmp_path)


@pytest.fixture
def both_on_s3(tmp_path: Path, s3_server: S3ServerProcess) -> Iterator[tuple[Side, Side]]:
    """Both registries at once, over one bucket (their s3 drivers), with one secret."""
    bucket = f"interop-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    storage = {
        **s3_server.storage_parameters(bucket, "/interop"),
        "delete": {"enabled": True},
        "redirect": {"disable": True},
    }
    yield from _both(tmp_path, storage)


def _both(
    tmp_path: Path,
    storage: dict[str, Any] | None = None,
    sections: dict[str, Any] | None = None,
) -> Iterator[tuple[Side, Side]]:
    root = tmp_path / "root"
    reference = Side("reference", root, tmp_path, storage, sections).start()
    try:
        txregistry = Side("txregistry", root, tmp_path, storage, sections).start()
        try:
            yield reference, txregistry
        finally:
            txregistry.stop()
    finally:
        reference.stop()


@pytest.fixture
def both_with_redis(tmp_path: Path) -> Iterator[tuple[Side, Side, RedisServerProcess]]:
    """Both registries at once, over one root and one Redis as their descriptor cache."""
    with RedisServerProcess(tmp_path / "redis") as redis:
        storage = {
            "filesystem": {"rootdirectory": str(tmp_path / "root")},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "redis"},
        }
        for reference, txregistry in _both(tmp_path, storage, {"redis": {"addr": redis.addr}}):
            yield reference, txregistry, redis


def test_shared_redis(both_with_redis: tuple[Side, Side, RedisServerProcess]) -> None:
    """
    One storage and one Redis: blobs pushed through either are served by
    both, each answering from what the other cached; a blob deleted
    through txregistry is unknown to both at once, through the reference,
    to it at once and to txregistry within NEAR_TTL; a manifest deleted
    through txregistry, at once to both, and through the reference, to
    txregistry within REVISION_TTL (the reference tells Redis nothing of
    manifest deletes).
    """
    reference, txregistry, redis = both_with_redis
    sides = (reference, txregistry)
    pushed = {side.kind: side.push("interop/redis", os.urandom(2 * CHUNK + 7)) for side in sides}
    for digest in pushed.values():
        for side in (*sides, *sides):  # the second round answered from Redis
            assert side.request("HEAD", f"interop/redis/blobs/{digest}").status == 200
        assert redis.command("SISMEMBER", "repository::interop/redis::blobs", digest) == 1
        assert redis.command("HGET", f"blobs::{digest}", "digest") == digest.encode()
    for deleter, other in ((reference, txregistry), (txregistry, reference)):
        digest = pushed[other.kind]
        assert deleter.request("DELETE", f"interop/redis/blobs/{digest}").status == 202
        assert reference.request("HEAD", f"interop/redis/blobs/{digest}").status == 404
        # txregistry answers from memory what Redis told it, for NEAR_TTL at
        # most when the reference deleted it (which bumps no generation).
        deadline = time.monotonic() + (0 if deleter is txregistry else NEAR_TTL + 0.5)
        while txregistry.request("HEAD", f"interop/redis/blobs/{digest}").status != 404:
            assert time.monotonic() < deadline, f"deleted through {deleter.kind}, still served"
            time.sleep(0.05)

    on = {side.kind: Images(side, "interop/redis") for side in sides}
    for deleter in sides:
        digest = on["txregistry"].push("v1", on["txregistry"].image(layers=1))
        for side in sides:
            assert on[side.kind].get(digest).status == 200
        assert on[deleter.kind].delete(digest).status == 202
        assert on["reference"].get(digest).status == 404
        deadline = time.monotonic() + (0 if deleter is txregistry else REVISION_TTL + 1)
        while on["txregistry"].get(digest).status != 404:
            assert time.monotonic() < deadline, f"deleted through {deleter.kind}, still served"
            time.sleep(0.1)


def test_txregistry_finishes_reference_upload_with_bare_url(
    both: tuple[Side, Side], blob: bytes
) -> None:
    """
    txregistry continues an upload that Distribution started, from the bare
    upload URL (no C{_state}): the first chunk, hashed by Distribution, is
    hashed again from storage.
    """
    reference, txregistry = both
    location = reference.patch(reference.start_upload("interop/handover"), blob[:CHUNK])
    bare = urlsplit(location).path

    status = txregistry.request("GET", bare)
    assert status.status == 204
    assert status.header("Range") == f"0-{CHUNK - 1}"
    location = txregistry.patch(bare, blob[CHUNK:])
    digest = digest_of(blob)
    txregistry.commit(location, digest)

    txregistry.assert_serves("interop/handover", blob)
    reference.assert_serves("interop/handover", blob)
    assert_stored(txregistry.root, "interop/handover", blob)


def test_txregistry_finishes_reference_upload_on_s3(
    both_on_s3: tuple[Side, Side], blob: bytes
) -> None:
    """
    On S3, Distribution keeps the bytes of an upload's first chunk in an
    open multipart upload, not an object: txregistry completes it and
    continues, and both serve the blob.

    Not covered, on S3 only: once Distribution has taken a second chunk it
    holds the upload as an object plus an open multipart upload that
    supersedes it; txregistry reads the object and ignores the open upload
    (its own failed writes can leave one), so the upload's status is out of
    date and its commit fails (DIGEST_INVALID), which makes clients push
    again.  The other way, txregistry keeps an upload as an object, which
    Distribution's s3 driver does not continue (BLOB_UPLOAD_UNKNOWN).
    """
    reference, txregistry = both_on_s3
    location = reference.patch(reference.start_upload("interop/s3"), blob[:CHUNK])

    status = txregistry.request("GET", location)
    assert status.status == 204
    assert status.header("Range") == f"0-{CHUNK - 1}"
    location = txregistry.patch(location, blob[CHUNK:])
    txregistry.commit(location, digest_of(blob))

    txregistry.assert_serves("interop/s3", blob)
    reference.assert_serves("interop/s3", blob)


def test_reference_needs_its_state(both: tuple[Side, Side], blob: bytes) -> None:
    """
    Distribution refuses a bare upload URL (BLOB_UPLOAD_INVALID): a client
    continuing a txregistry upload on it must send the C{_state} of the
    Location it was given, which Distribution accepts with a shared secret.
    """
    reference, txregistry = both
    location = txregistry.patch(txregistry.start_upload("interop/handover"), blob[:CHUNK])
    assert "_state=" in location

    refused = reference.request("PATCH", urlsplit(location).path, iter([blob[CHUNK:]]))
    assert refused.status == 404
    assert refused.error_codes() == ["BLOB_UPLOAD_INVALID"]

    status = reference.request("GET", location)
    assert status.status == 204
    assert status.header("Range") == f"0-{CHUNK - 1}"
    location = reference.patch(location, blob[CHUNK:])
    reference.commit(location, digest_of(blob))

    reference.assert_serves("interop/handover", blob)
    txregistry.assert_serves("interop/handover", blob)
    assert_stored(reference.root, "interop/handover", blob)


@pytest.mark.parametrize("starter", ["reference", "txregistry"])
def test_upload_moves_back_and_forth(both: tuple[Side, Side], blob: bytes, starter: str) -> None:
    """
    A client follows each Location it is given, on whichever registry it
    talks to next: chunks go to one, then the other, then the first again,
    and the other commits.  Neither has the running hash of the whole upload.
    """
    reference, txregistry = both
    one, other = (reference, txregistry) if starter == "reference" else (txregistry, reference)
    pieces = [blob[:CHUNK], blob[CHUNK : 2 * CHUNK], blob[2 * CHUNK :]]
    location = one.patch(one.start_upload("interop/pingpong"), pieces[0])
    location = other.patch(location, pieces[1])
    location = one.patch(location, pieces[2])
    other.commit(location, digest_of(blob))

    one.assert_serves("interop/pingpong", blob)
    other.assert_serves("interop/pingpong", blob)
    assert not any((reference.root / V2 / "repositories/interop/pingpong/_uploads").iterdir())


def test_wrong_digest_across(both: tuple[Side, Side], blob: bytes) -> None:
    """
    txregistry recomputes the digest of bytes Distribution received and
    refuses a commit whose digest does not match them.
    """
    reference, txregistry = both
    location = reference.patch(reference.start_upload("interop/wrong"), blob[:CHUNK])
    wrong = digest_of(blob[:CHUNK] + b"x")
    separator = "&" if "?" in location else "?"
    response = txregistry.request("PUT", f"{location}{separator}digest={wrong}")
    assert response.status == 400
    assert response.error_codes() == ["DIGEST_INVALID"]
    assert not blob_data(reference.root, wrong).exists()
    assert reference.request("HEAD", f"interop/wrong/blobs/{wrong}").status == 404


# -- (e): the same layout on disk --------------------------------------------------


def test_same_layout_on_disk(tmp_path: Path, blob: bytes) -> None:
    """
    The same blob pushed the same way to each registry, each over its own
    root, leaves the same folders and files with the same bytes: the blob's
    C{data} and the repository's link file (C{sha256:<hex>}, no newline);
    nothing of the upload is left behind.
    """
    trees = {}
    for kind in ("reference", "txregistry"):
        root = tmp_path / f"{kind}-root"
        side = Side(kind, root, tmp_path).start()
        try:
            digest = side.push("interop/layout", blob)
            side.mount("interop/mounted", "interop/layout", digest)
        finally:
            side.stop()
        trees[kind] = tree(root)
        # Beside docker/, txregistry keeps only the (empty) folder where
        # put_content stages files before renaming them into place.
        beside = {path.name for path in root.iterdir()} - {"docker"}
        assert beside <= ({"~tmp"} if kind == "txregistry" else set()), (kind, beside)
        assert not list(root.glob("~tmp/*")), kind

    hex_digest = digest.split(":")[1]
    expected_files = {
        f"{V2}/blobs/sha256/{hex_digest[:2]}/{hex_digest}/data": blob,
        f"{V2}/repositories/interop/layout/_layers/sha256/{hex_digest}/link": digest.encode(),
        f"{V2}/repositories/interop/mounted/_layers/sha256/{hex_digest}/link": digest.encode(),
    }
    for kind, found in trees.items():
        files = {path: content for path, content in found.items() if content is not None}
        assert files == expected_files, kind
    assert sorted(trees["txregistry"]) == sorted(trees["reference"])
