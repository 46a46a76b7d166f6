"""
Downloads: the sendfile(2) path for blobs in local files, the private
Twisted attributes it relies on, and a client that leaves mid-download.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.internet.testing import StringTransport

from conftest import Registry
from txregistry.resources.sendfile import sendfile_transport


class _Request:
    def __init__(self, transport: Any) -> None:
        self.channel = type("Channel", (), {"transport": transport})()


def test_twisted_attributes_pinned() -> None:
    """
    The attributes of FileDescriptor the sendfile streamer relies on exist,
    and doWrite still resumes a paused producer once the buffer is empty.
    """
    import inspect

    descriptor = FileDescriptor()
    for name in ("dataBuffer", "offset", "_tempDataBuffer", "producerPaused"):
        assert hasattr(descriptor, name), name
    source = inspect.getsource(FileDescriptor.doWrite)
    assert "self.producerPaused = False" in source
    assert "self.producer.resumeProducing()" in source


def test_transports_without_a_socket_are_streamed() -> None:
    """A transport that is no socket (TLS, tests) gets the ordinary streamer."""
    assert sendfile_transport(_Request(StringTransport())) is None  # type: ignore[arg-type]
    assert sendfile_transport(_Request(None)) is None  # type: ignore[arg-type]


def test_large_blob_and_ranges_via_sendfile(registry: Registry, repo: str) -> None:
    """Several MiB, whole and in ranges, arrive byte for byte."""
    data = os.urandom(20 * 1024 * 1024 + 123)
    digest = registry.push(repo, data)
    assert registry.request("GET", f"{repo}/blobs/{digest}").body == data
    part = registry.request(
        "GET", f"{repo}/blobs/{digest}", headers={"Range": "bytes=1000000-15000000"}
    )
    assert part.status == 206
    assert part.body == data[1000000:15000001]


def test_client_leaving_mid_download(registry: Registry, repo: str) -> None:
    """
    A client that reads a little of a big blob and hangs up leaves no error
    behind, and the registry keeps answering.
    """
    data = os.urandom(64 * 1024 * 1024)
    digest = registry.push(repo, data)
    since = registry.log_size()
    port = registry.process.port
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(
                f"GET /v2/{repo}/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            )
            received = connection.recv(65536)
            assert received.startswith(b"HTTP/1.1 200")
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    time.sleep(0.5)
    assert registry.request("GET", "").status == 200
    assert registry.request("GET", f"{repo}/blobs/{digest}").body == data
    assert registry.log_problems(since) == []
