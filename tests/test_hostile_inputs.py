"""
Hostile inputs against one registry process, each on a raw socket: bodies
longer or shorter than their C{Content-Length}, a client that leaves at
every stage of an upload, and requests too large in each of their parts.
After each, the registry serves others and shows nothing partial; the
header limits (Twisted's) close the connection without the registry's
memory growing.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from conftest import Registry
from support import assert_error, sha256
from txregistry.testing.client import read_response_head

KiB = 1024
MiB = 1024 * KiB


# -- raw requests ----------------------------------------------------------------------


def connect(registry: Registry) -> socket.socket:
    """A connection to the registry."""
    return socket.create_connection(("127.0.0.1", registry.process.port), timeout=10)


def head_bytes(method: str, target: str, headers: dict[str, str]) -> bytes:
    """A request line and headers, up to the blank line."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One whole response (by its Content-Length); status 0 if none came."""
    status, headers, rest = read_response_head(sock)
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def closed_or_refused(sock: socket.socket) -> int:
    """
    Read until the server closes the connection: the status it answered
    first, or 0 if it closed without an answer.  Fails if it never closes.
    """
    status, _, _ = read_response_head(sock)
    sock.settimeout(10)
    while True:
        try:
            if not sock.recv(65536):
                return status
        except ConnectionResetError:
            return status


def path_of(location: str) -> str:
    """The path and query of a Location header."""
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def rss_kib(registry: Registry) -> int:
    """The registry process's resident set, in KiB."""
    assert registry.process.process is not None
    with open(f"/proc/{registry.process.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll until C{condition} holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def assert_serves(registry: Registry) -> None:
    """The registry answers a normal client."""
    assert registry.request("GET", "").status == 200


# -- bodies that lie about their length --------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        b"garbage that is no request\r\n\r\n",
        b"\x00\xff" * 100,
        b"DELETE /v2/ HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_body_longer_than_its_length(module_registry: Registry, repo: str, extra: bytes) -> None:
    """
    Bytes past the body's length are not part of the blob: the first
    request is answered for its length alone; what follows is a request of
    its own, answered or refused, without harming the first.
    """
    data = os.urandom(1000)
    digest = sha256(data)
    with connect(module_registry) as sock:
        sock.sendall(
            head_bytes(
                "POST",
                f"/v2/{repo}/blobs/uploads/?digest={digest}",
                {"Content-Length": str(len(data))},
            )
            + data
            + extra
        )
        status, _, _ = read_response(sock)
        assert status == 201
        # Incomplete garbage waits for its line's end: say none is coming.
        sock.shutdown(socket.SHUT_WR)
        second, _, body = read_response(sock)
        assert second in (0, 400, 405), (second, body)
        if second >= 400 and body:
            assert json.loads(body)["errors"]
    fetched = module_registry.request("GET", f"{repo}/blobs/{digest}")
    assert fetched.status == 200 and fetched.body == data
    assert module_registry.upload_entries(repo) == []


def test_body_shorter_than_its_length(module_registry: Registry, repo: str) -> None:
    """A monolithic push cut short is not committed, and leaves no upload."""
    data = os.urandom(100_000)
    digest = sha256(data)
    with connect(module_registry) as sock:
        sock.sendall(
            head_bytes(
                "POST",
                f"/v2/{repo}/blobs/uploads/?digest={digest}",
                {"Content-Length": str(len(data))},
            )
            + data[: len(data) // 2]
        )
        time.sleep(0.2)
    wait_for(lambda: module_registry.upload_entries(repo) == [])
    assert module_registry.request("HEAD", f"{repo}/blobs/{digest}").status == 404
    assert not module_registry.blob_file(digest).exists()
    assert_serves(module_registry)


# -- a client that leaves at each stage of an upload ----------------------------------------


def _start_upload(registry: Registry, repo: str) -> str:
    return path_of(registry.start_upload(repo).header("Location") or "")


def _leave_after_post_headers(registry: Registry, repo: str, data: bytes) -> str | None:
    # The POST's body never comes.
    with connect(registry) as sock:
        sock.sendall(head_bytes("POST", f"/v2/{repo}/blobs/uploads/", {"Content-Length": "10"}))
        time.sleep(0.2)
    return None


def _leave_mid_patch(registry: Registry, repo: str, data: bytes) -> str | None:
    location = _start_upload(registry, repo)
    with connect(registry) as sock:
        sock.sendall(head_bytes("PATCH", location, {"Content-Length": str(len(data))}))
        sock.sendall(data[: len(data) // 3])
        time.sleep(0.2)
    return location


def _leave_after_patch(registry: Registry, repo: str, data: bytes) -> str | None:
    location = _start_upload(registry, repo)
    with connect(registry) as sock:
        sock.sendall(head_bytes("PATCH", location, {"Content-Length": str(len(data) // 2)}))
        sock.sendall(data[: len(data) // 2])
        status, _, _ = read_response(sock)
        assert status == 202
    return location


def _leave_mid_put(registry: Registry, repo: str, data: bytes) -> str | None:
    location = _start_upload(registry, repo)
    target = f"{location}&digest={sha256(data)}"
    with connect(registry) as sock:
        sock.sendall(head_bytes("PUT", target, {"Content-Length": str(len(data))}))
        sock.sendall(data[: len(data) // 2])
        time.sleep(0.2)
    return location


def _leave_before_put_response(registry: Registry, repo: str, data: bytes) -> str | None:
    location = _start_upload(registry, repo)
    target = f"{location}&digest={sha256(data)}"
    with connect(registry) as sock:
        sock.sendall(head_bytes("PUT", target, {"Content-Length": str(len(data))}) + data)
    return location


STAGES = {
    "after POST headers": _leave_after_post_headers,
    "mid PATCH body": _leave_mid_patch,
    "after PATCH, before PUT": _leave_after_patch,
    "mid PUT body": _leave_mid_put,
    "after PUT, before its response": _leave_before_put_response,
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_client_leaves(module_registry: Registry, repo: str, stage: str) -> None:
    """
    After a client leaves at C{stage}: the registry serves others, the blob
    is visible only whole, and the upload resumes from what storage has (or
    is unknown, or was committed).
    """
    data = os.urandom(300_000)
    digest = sha256(data)
    location = STAGES[stage](module_registry, repo, data)
    assert_serves(module_registry)
    if location is None:
        wait_for(lambda: module_registry.upload_entries(repo) == [])
        assert module_registry.request("HEAD", f"{repo}/blobs/{digest}").status == 404
        return

    def settled() -> bool:
        # The registry may still be writing what it received.
        blob = module_registry.request("HEAD", f"{repo}/blobs/{digest}")
        status = module_registry.request("GET", location.split("?", 1)[0])
        return blob.status == 200 or status.status in (204, 404)

    wait_for(settled)
    blob = module_registry.request("HEAD", f"{repo}/blobs/{digest}")
    if blob.status == 200:
        # Committed whole before the client left.
        assert module_registry.request("GET", f"{repo}/blobs/{digest}").body == data
        return
    assert blob.status == 404
    status = module_registry.request("GET", location.split("?", 1)[0])
    if status.status == 404:
        assert_error(status, 404, "BLOB_UPLOAD_UNKNOWN")
        return
    assert status.status == 204
    received = int((status.header("Range") or "0-0").split("-")[1]) + 1
    received = received if status.header("Range") != "0-0" else 0
    assert received <= len(data)
    rest = data[received:]
    bare = path_of(status.header("Location") or location.split("?", 1)[0])
    done = module_registry.request(
        "PUT", f"{bare}{'&' if '?' in bare else '?'}digest={digest}", rest
    )
    assert done.status == 201, done.body
    assert module_registry.request("GET", f"{repo}/blobs/{digest}").body == data


# -- requests too large in one of their parts ----------------------------------------------


def test_oversized_repository_name(module_registry: Registry) -> None:
    """A name longer than 255 characters is NAME_INVALID."""
    name = "/".join(["a" * 50] * 6)
    assert len(name) > 255
    response = module_registry.request("POST", f"{name}/blobs/uploads/")
    assert_error(response, 400, "NAME_INVALID")
    response = module_registry.request("GET", f"{name}/manifests/latest")
    assert_error(response, 400, "NAME_INVALID")


def test_oversized_manifest(module_registry: Registry, repo: str) -> None:
    """A manifest over the size limit is MANIFEST_INVALID, 413."""
    document = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "annotations": {"padding": "x" * (5 * MiB)},
    }
    response = module_registry.request(
        "PUT",
        f"{repo}/manifests/latest",
        json.dumps(document).encode(),
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert_error(response, 413, "MANIFEST_INVALID")
    assert module_registry.request("HEAD", f"{repo}/manifests/latest").status == 404


def _long_path(repo: str) -> bytes:
    return head_bytes("GET", f"/v2/{repo}/manifests/{'x' * 64 * KiB}", {})


def _one_large_header(repo: str) -> bytes:
    return head_bytes("GET", "/v2/", {"X-Large": "x" * MiB})


def _many_headers(repo: str) -> bytes:
    return head_bytes("GET", "/v2/", {f"X-Header-{index}": "x" for index in range(10_000)})


@pytest.mark.parametrize("request_bytes", [_long_path, _one_large_header, _many_headers])
def test_oversized_request_head(
    module_registry: Registry, repo: str, request_bytes: Callable[[str], bytes]
) -> None:
    """
    A request line or headers past Twisted's limits (16 KiB of line and
    headers, 500 headers) are refused with a 400 and a closed connection,
    or just a closed connection; the registry's memory does not grow with
    them (twenty in a row, under 50 MB together).
    """
    before = rss_kib(module_registry)
    data = request_bytes(repo)
    for _ in range(20):
        with connect(module_registry) as sock:
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # it stopped reading: refused
            assert closed_or_refused(sock) in (0, 400, 414, 431)
    assert_serves(module_registry)
    assert rss_kib(module_registry) - before < 50 * 1024


def test_oversized_upload_id(module_registry: Registry, repo: str) -> None:
    """
    An upload id longer than a file name may be (found by the fuzzer: it
    was a 500, ENAMETOOLONG) is an unknown upload.
    """
    response = module_registry.request("GET", f"{repo}/blobs/uploads/{'x' * 1000}")
    assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    response = module_registry.request(
        "PUT", f"{repo}/blobs/uploads/{'x' * 1000}?digest={sha256(b'x')}", b"x"
    )
    assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")


def test_registry_alive(module_registry: Registry) -> None:
    """After all of the above the process runs and answers."""
    assert module_registry.process.running
    assert_serves(module_registry)
