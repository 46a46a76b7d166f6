"""
A small blocking HTTP client for tests and benchmarks: one request, the
whole answer back, on a fresh or a kept connection; and reading answers
from a raw socket, for requests no client library would send.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class HTTPResponse:
    """A response, read whole."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        """One header's value, or L{None}."""
        return self.headers.get(name)

    def json(self) -> Any:
        """The body, parsed as JSON."""
        return json.loads(self.body)

    def error_codes(self) -> list[str]:
        """The C{code} of each entry of an OCI error body."""
        return [error["code"] for error in self.json()["errors"]]


def request(
    method: str,
    url: str,
    body: bytes | Iterable[bytes] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> HTTPResponse:
    """
    Send one request on a new connection.  An iterable body is sent with
    chunked transfer encoding unless C{headers} give a Content-Length.
    """
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port, timeout=timeout
    )
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        send_headers = dict(headers or {})
        chunked = (
            body is not None
            and not isinstance(body, bytes)
            and not any(key.lower() == "content-length" for key in send_headers)
        )
        connection.request(
            method, target or "/", body=body, headers=send_headers, encode_chunked=chunked
        )
        response = connection.getresponse()
        return HTTPResponse(response.status, response.headers, response.read())
    finally:
        connection.close()


def receive(sock: socket.socket) -> bytes:
    """The next bytes a raw socket gives; C{b""} once it is closed or reset."""
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""


def read_response_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """
    Read one response's status and headers from a raw socket, skipping
    1xx answers (C{100 Continue}): its status, its headers (names in lower
    case), and what was read past them.  The status is 0 when the
    connection closed before a whole head came; what was read of it is
    then the third item.
    """
    data = b""
    while True:
        while b"\r\n\r\n" not in data:
            chunk = receive(sock)
            if not chunk:
                return 0, {}, data
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        if status >= 200:
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            return status, headers, data
