"""
Storage that fills up: a registry process whose filesystem storage is a
24 MiB tmpfs of the test's own, pushes that do not fit, and writes refused
while the disk is full; then unit tests of the same paths without a mount.

What a write answers when the disk is full: C{507 Insufficient Storage},
with the OCI error body C{UNAVAILABLE}, detail C{"storage is full"}.

  - The status: RFC 4918 defines 507 for exactly this, "the server is
    unable to store the representation needed to successfully complete the
    request", a condition "considered to be temporary".  503 would say the
    whole service is down, while reads are served all along; a load
    balancer or a health probe that takes 503 for a dead backend would
    drop a process that is only out of room.  Docker's client shows
    nothing of a 5xx but its status line (Distribution's
    C{registry/client/errors.go}, C{HandleErrorResponse}: "Received
    unexpected HTTP status: 507 Insufficient Storage"), which names the
    cause; a 500 or 503 there sends the operator to the logs for it.
  - The code: the OCI 1.1 code set has none for a full disk, and rules
    only 4xx bodies.  Distribution answers any driver error, ENOSPC
    included, as C{UNKNOWN} 500, its code for errors "without an API
    classification", which is also ours for bugs.  A full disk is
    classified: temporary, the client may retry once space is freed, as
    Distribution's C{UNAVAILABLE} says.  No code of our own: clients know
    Distribution's set.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import io
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from conftest import Registry, StartRegistry
from manifest_support import OCI_LAYER, Images
from support import assert_error, sha256
from test_streaming import parse_response, until
from txregistry.config import load_config
from txregistry.digest import Digest
from txregistry.drivers.base import ValidatingDriver
from txregistry.drivers.errors import StorageFullError
from txregistry.drivers.filesystem import FilesystemWriter
from txregistry.drivers.inmemory import InMemoryDriver
from txregistry.errors import BLOB_UPLOAD_UNKNOWN, RegistryError
from txregistry.interfaces import IFileWriter
from txregistry.registry import paths
from txregistry.registry.repository import Registry as DomainRegistry
from txregistry.resources.site import make_site
from txregistry.testing.client import HTTPResponse, request

MiB = 1024 * 1024
DISK_SIZE = 24 * MiB
# Space a failed write may still hold once it is cleaned up: folders and
# inodes, a few pages at most.
SLACK = 64 * 1024


# -- the small disk ---------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """
    A 24 MiB tmpfs mounted for the test (root only), unmounted after it;
    a process started on it must be stopped first (see L{full_registry}).
    """
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the storage needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        if "permission denied" in mounted.stderr.lower():
            # EPERM: a container without CAP_SYS_ADMIN.
            pytest.skip(f"this machine refuses to mount a tmpfs: {mounted.stderr.strip()}")
        raise AssertionError(f"mount failed: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.fixture
def full_registry(small_disk: Path, start_registry: StartRegistry) -> Registry:
    """
    A registry whose storage root is on L{small_disk}.  Asking for the
    disk first has it unmounted after the process is stopped, and the
    process's log is checked for tracebacks (it lives off the disk).
    """
    return start_registry(root=small_disk / "root")


def small_disk_of(registry: Registry) -> Path:
    """The mount point the registry's storage root is on."""
    return registry.root.parent


def free_bytes(folder: Path) -> int:
    """The space left on the filesystem of C{folder}."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def fill(folder: Path) -> Path:
    """Fill C{folder}'s filesystem to the last byte with a file; its path."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as file:
        for size in (MiB, 4096, 1):
            try:
                while True:
                    file.write(b"\0" * size)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
    assert free_bytes(folder) == 0
    return filler


def assert_full(response: HTTPResponse) -> None:
    """The answer to a write that did not fit: 507 UNAVAILABLE, storage full."""
    assert_error(response, 507, "UNAVAILABLE")
    assert response.json()["errors"][0]["detail"] == "storage is full", response.body


def send(registry: Registry, method: str, target: str, body: bytes | None = None) -> HTTPResponse:
    """A request that may be answered 5xx (L{Registry.request} refuses them)."""
    return request(method, registry.resolve(target), body)


def monolithic(data: bytes) -> str:
    """The target of a monolithic push of C{data}."""
    return f"blobs/uploads/?digest={sha256(data)}"


def assert_pulls(registry: Registry, repo: str, data: bytes) -> None:
    """The blob C{data} of C{repo} is served whole."""
    response = registry.request("GET", f"{repo}/blobs/{sha256(data)}")
    assert response.status == 200
    assert hashlib.sha256(response.body).digest() == hashlib.sha256(data).digest()


def assert_cleaned_up(registry: Registry, repo: str, free_before: int) -> None:
    """No upload of C{repo} is left in storage, and the space it took is back."""
    assert registry.upload_entries(repo) == []
    assert not list((registry.root / "~tmp").glob("*"))
    assert free_bytes(small_disk_of(registry)) >= free_before - SLACK


def assert_warned(registry: Registry) -> None:
    """The registry said why, in one warning line (tracebacks fail the fixture)."""
    assert "storage full" in registry.process.output(lines=None)


def wait_for(condition: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """Poll until C{condition()} holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- pushes that do not fit -----------------------------------------------------------


def test_monolithic_push_too_large(full_registry: Registry, repo: str) -> None:
    """
    A 40 MiB monolithic push to a 24 MiB disk is answered 507 once its body
    is in; its upload is gone, and with it the space it took, so the next
    push fits; what was pushed before is still served.
    """
    before = os.urandom(MiB)
    full_registry.push(repo, before)
    free_before = free_bytes(small_disk_of(full_registry))

    large = os.urandom(40 * MiB)
    assert_full(send(full_registry, "POST", f"{repo}/{monolithic(large)}", large))

    assert_cleaned_up(full_registry, repo, free_before)
    assert full_registry.request("HEAD", f"{repo}/blobs/{sha256(large)}").status == 404
    assert_pulls(full_registry, repo, before)
    after = os.urandom(2 * MiB)
    full_registry.push(repo, after)
    assert_pulls(full_registry, repo, after)
    assert_warned(full_registry)


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_chunk_crossing_the_limit(full_registry: Registry, repo: str, method: str) -> None:
    """
    An upload whose chunk (C{PATCH}) or last chunk (C{PUT}) crosses the
    limit is answered 507 and cancelled: half a chunk cannot be resumed, and
    the bytes it stored are given back.  The client starts over.
    """
    free_before = free_bytes(small_disk_of(full_registry))
    first, second = os.urandom(8 * MiB), os.urandom(32 * MiB)
    location = full_registry.start_upload(repo).header("Location")
    assert location is not None
    response = full_registry.request("PATCH", location, first)
    assert response.status == 202, response.body
    location = response.header("Location")
    assert location is not None
    if method == "PUT":
        separator = "&" if "?" in location else "?"
        location += f"{separator}digest={sha256(first + second)}"
    assert_full(send(full_registry, method, location, second))

    assert_error(full_registry.request("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_cleaned_up(full_registry, repo, free_before)
    small = os.urandom(MiB)
    full_registry.push(repo, small)
    assert_pulls(full_registry, repo, small)
    assert_warned(full_registry)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_client_leaves_after_the_disk_filled(
    full_registry: Registry, repo: str, method: str
) -> None:
    """
    A client that leaves in the middle of a body that did not fit leaves
    nothing behind either (the upload is closed without a request to
    answer), and nothing is logged as a crash.
    """
    free_before = free_bytes(small_disk_of(full_registry))
    data = os.urandom(32 * MiB)
    if method == "POST":
        target = full_registry.resolve(f"{repo}/{monolithic(data + b'more')}")
    else:
        location = full_registry.start_upload(repo).header("Location")
        assert location is not None
        target = full_registry.resolve(location)
    parts = urlsplit(target)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    try:
        connection.putrequest(method, f"{parts.path}?{parts.query}")
        connection.putheader("Content-Length", str(len(data) + 4))
        connection.putheader("Content-Type", "application/octet-stream")
        connection.endheaders()
        connection.send(data)
    finally:
        connection.close()

    wait_for(lambda: full_registry.upload_entries(repo) == [], "the upload to be discarded")
    assert_cleaned_up(full_registry, repo, free_before)
    small = os.urandom(MiB)
    full_registry.push(repo, small)
    assert_pulls(full_registry, repo, small)


# -- a full disk --------------------------------------------------------------------


def test_full_disk_refuses_writes_and_serves_reads(full_registry: Registry, repo: str) -> None:
    """
    With not a byte left: every write (an upload's start, a monolithic
    push, a manifest, a tag, a cross-repository mount) is answered 507 and
    leaves nothing visible, every read is served; once space is freed,
    the same writes succeed.
    """
    images = Images(full_registry, repo)
    layer = os.urandom(MiB)
    layer_descriptor = images.blob(OCI_LAYER, layer)
    manifest = images.image()
    digest = images.push("before", manifest)
    new_manifest = images.image()  # its blobs are pushed; the manifest is not
    other = f"{repo}-other"
    filler = fill(small_disk_of(full_registry))

    # Reads.
    assert_pulls(full_registry, repo, layer)
    for reference in ("before", digest):
        response = images.get(reference)
        assert response.status == 200 and response.body == manifest
    assert full_registry.request("HEAD", f"{repo}/blobs/{sha256(layer)}").status == 200
    assert full_registry.request("GET", f"{repo}/tags/list").json()["tags"] == ["before"]
    assert repo in full_registry.request("GET", "_catalog").json()["repositories"]

    # Writes.
    small = os.urandom(4096)
    assert_full(send(full_registry, "POST", f"{repo}/blobs/uploads/"))
    assert_full(send(full_registry, "POST", f"{repo}/{monolithic(small)}", small))
    assert full_registry.upload_entries(repo) == []
    assert_full(put_manifest(full_registry, repo, "new", new_manifest))
    assert_error(images.get("new"), 404, "MANIFEST_UNKNOWN")
    assert_full(put_manifest(full_registry, repo, "again", manifest))
    assert_error(images.get("again"), 404, "MANIFEST_UNKNOWN")
    mount = f"{other}/blobs/uploads/?mount={layer_descriptor['digest']}&from={repo}"
    assert_full(send(full_registry, "POST", mount))
    assert full_registry.request("HEAD", f"{other}/blobs/{sha256(layer)}").status == 404
    assert not list((full_registry.root / "~tmp").glob("*"))
    assert_warned(full_registry)

    # Space freed: the same writes.
    filler.unlink()
    full_registry.start_upload(repo)
    full_registry.push(repo, small)
    assert put_manifest(full_registry, repo, "new", new_manifest).status == 201
    assert put_manifest(full_registry, repo, "again", manifest).status == 201
    assert full_registry.request("POST", mount).status == 201
    assert_pulls(full_registry, other, layer)


def test_commit_when_full(full_registry: Registry, repo: str) -> None:
    """
    An upload whose bytes are in but whose commit does not fit (its link)
    is answered 507 and discarded; its blob is not part of the repository,
    and pushing it again once space is freed works.
    """
    data = os.urandom(MiB)
    location = full_registry.start_upload(repo).header("Location")
    assert location is not None
    response = full_registry.request("PATCH", location, data)
    assert response.status == 202, response.body
    location = response.header("Location")
    assert location is not None
    filler = fill(small_disk_of(full_registry))

    separator = "&" if "?" in location else "?"
    assert_full(send(full_registry, "PUT", f"{location}{separator}digest={sha256(data)}"))
    assert_error(full_registry.request("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert full_registry.upload_entries(repo) == []
    assert full_registry.request("HEAD", f"{repo}/blobs/{sha256(data)}").status == 404

    filler.unlink()
    full_registry.push(repo, data)
    assert_pulls(full_registry, repo, data)


def put_manifest(registry: Registry, repo: str, tag: str, content: bytes) -> Any:
    """C{PUT} an OCI manifest by tag; may be answered 5xx."""
    return request(
        "PUT",
        registry.resolve(f"{repo}/manifests/{tag}"),
        content,
        {"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )


# -- the same paths in memory, without a mount --------------------------------------------


class NoRoomFile(io.RawIOBase):
    """A file every write to which fails with C{error_number}."""

    def __init__(self, error_number: int) -> None:
        self.error_number = error_number

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        raise OSError(self.error_number, os.strerror(self.error_number))


class FilesystemWriterTests(TestCase):
    """What the filesystem driver's writer makes of a write that finds no room."""

    async def write(self, error_number: int) -> None:
        writer = FilesystemWriter(NoRoomFile(error_number), "/a/data", "/root/a/data", 0)
        try:
            await writer.write(b"bytes")
        finally:
            await writer.close()

    async def test_full(self) -> None:
        """ENOSPC is L{StorageFullError}, naming the driver path."""
        with self.assertRaises(StorageFullError) as raised:
            await self.write(errno.ENOSPC)
        self.assertEqual(raised.exception.path, "/a/data")
        self.assertIn("No space left on device", str(raised.exception))

    async def test_over_quota(self) -> None:
        """EDQUOT (a quota spent) is L{StorageFullError} too."""
        with self.assertRaises(StorageFullError):
            await self.write(errno.EDQUOT)

    async def test_other_errors_unchanged(self) -> None:
        """Any other error is raised as it is."""
        with self.assertRaises(OSError) as raised:
            await self.write(errno.EIO)
        self.assertEqual(raised.exception.errno, errno.EIO)


@implementer(IFileWriter)
class FullWriter:
    """An in-memory writer whose writes fail while its driver is full."""

    def __init__(self, driver: FullDriver, path: str, inner: IFileWriter) -> None:
        self._driver = driver
        self._path = path
        self._inner = inner
        self.size = inner.size

    def write(self, data: bytes) -> Deferred[None]:
        if self._driver.full:
            return fail(StorageFullError(self._path, "No space left on device"))
        self.size += len(data)
        return self._inner.write(data)

    def close(self) -> Deferred[None]:
        return self._inner.close()

    def commit(self) -> Deferred[None]:
        return self._inner.commit()

    def cancel(self) -> Deferred[None]:
        return self._inner.cancel()


class FullDriver(InMemoryDriver):
    """
    An in-memory driver whose writes fail while C{full}, as a full
    filesystem's do; an empty file still fits (it takes no room on tmpfs).
    """

    full = False

    def put_content(self, path: str, content: bytes) -> Deferred[None]:
        if self.full and content:
            return fail(StorageFullError(path, "No space left on device"))
        return super().put_content(path, content)

    def writer(self, path: str, append: bool) -> Deferred[IFileWriter]:
        return super().writer(path, append).addCallback(lambda inner: FullWriter(self, path, inner))

    def stored(self) -> list[str]:
        """Every file stored."""
        return sorted(self._files)


class FullUploadTests(TestCase):
    """Uploads that run out of room give back what they stored."""

    def setUp(self) -> None:
        self.driver = FullDriver()
        self.repository = DomainRegistry(ValidatingDriver(self.driver)).repository("foo")

    async def assert_gone(self, upload_id: str) -> None:
        with self.assertRaises(RegistryError) as raised:
            await self.repository.uploads.resume(upload_id)
        self.assertEqual(raised.exception.error_code, BLOB_UPLOAD_UNKNOWN)
        self.assertEqual([p for p in self.driver.stored() if "/_uploads/" in p], [])

    async def test_write_fails(self) -> None:
        """An appender whose write found no room discards its upload when closed."""
        session = await self.repository.uploads.start()
        appender = await session.open_appender()
        appender.write(b"fits")
        await appender.flush()
        self.driver.full = True
        appender.write(b"does not")
        with self.assertRaises(StorageFullError):
            await appender.close()
        await self.assert_gone(session.upload_id)

    async def test_start_fails(self) -> None:
        """An upload that cannot be started leaves nothing behind."""
        self.driver.full = True
        with self.assertRaises(StorageFullError):
            await self.repository.uploads.start()
        self.assertEqual(self.driver.stored(), [])

    async def test_commit_fails(self) -> None:
        """
        An upload whose commit found no room is discarded, and its blob is
        not part of the repository.
        """
        session = await self.repository.uploads.start()
        appender = await session.open_appender()
        appender.write(b"content")
        await appender.close()
        self.driver.full = True
        digest = Digest.parse(sha256(b"content"))
        with self.assertRaises(StorageFullError):
            await session.commit(digest)
        await self.assert_gone(session.upload_id)
        self.assertNotIn(paths.layer_link("foo", digest), self.driver.stored())

    async def test_small_commit_fails(self) -> None:
        """
        A small body committed straight into a blob (no upload file) that
        found no room: the upload is discarded, nothing is linked.
        """
        session = await self.repository.uploads.start()
        self.driver.full = True
        digest = Digest.parse(sha256(b"content"))
        with self.assertRaises(StorageFullError):
            await session.commit_bytes(b"content", digest)
        await self.assert_gone(session.upload_id)
        self.assertNotIn(paths.layer_link("foo", digest), self.driver.stored())
        self.assertNotIn(paths.blob_data(digest), self.driver.stored())

    async def test_whole_blob_fails(self) -> None:
        """A monolithic push held in memory that found no room stores nothing."""
        self.driver.full = True
        digest = Digest.parse(sha256(b"content"))
        with self.assertRaises(StorageFullError):
            await self.repository.uploads.put_whole(b"content", digest)
        self.assertEqual(self.driver.stored(), [])


class FullSiteTests(TestCase):
    """The HTTP side of a full storage, in memory."""

    def setUp(self) -> None:
        config = load_config(
            "version: 0.1\n"
            "log: {accesslog: {disabled: true}}\n"
            "storage: {inmemory: {}}\n"
            "http: {addr: '127.0.0.1:0', secret: test}\n",
            environ={},
        )
        self.driver = FullDriver()
        self.registry = DomainRegistry(ValidatingDriver(self.driver))
        site = make_site(config, self.registry, b"test")
        self.protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.protocol.callLater = Clock().callLater  # no real idle timeouts
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.addCleanup(lambda: self.protocol.connectionLost(Failure(ConnectionDone())))
        self.warnings: list[str] = []

        def observe(event: Any) -> None:
            if event.get("log_level") == LogLevel.warn:
                self.warnings.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def send_head(self, method: str, target: str, length: int) -> None:
        self.protocol.dataReceived(
            f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Length: {length}\r\n\r\n".encode("ascii")
        )

    async def test_answered_507(self) -> None:
        """A push that found no room is answered 507 UNAVAILABLE, with a warning."""
        self.driver.full = True
        self.send_head("POST", f"/v2/foo/blobs/uploads/?digest={sha256(b'data')}", 4)
        self.protocol.dataReceived(b"data")
        await until(self, lambda: b"\r\n\r\n" in self.transport.value(), "a response")
        status, _, body = parse_response(self.transport.value())
        self.assertEqual(status, 507)
        self.assertEqual(
            json.loads(body),
            {
                "errors": [
                    {
                        "code": "UNAVAILABLE",
                        "message": "service unavailable",
                        "detail": "storage is full",
                    }
                ]
            },
        )
        self.assertEqual(len(self.warnings), 1)
        self.assertIn("storage full", self.warnings[0])
        self.assertEqual([p for p in self.driver.stored() if "/_uploads/" in p], [])

    async def test_client_leaves(self) -> None:
        """
        An upload that found no room, whose client left half-way, is
        discarded, with a warning (no request is left to answer).
        """
        session = await self.registry.repository("foo").uploads.start()
        self.driver.full = True
        self.send_head("PATCH", f"/v2/foo/blobs/uploads/{session.upload_id}", 10)
        self.protocol.dataReceived(b"half")
        self.protocol.connectionLost(Failure(ConnectionDone()))
        await until(self, lambda: bool(self.warnings), "the upload to be closed")
        self.assertIn("storage full", self.warnings[0])
        self.assertEqual([p for p in self.driver.stored() if "/_uploads/" in p], [])
