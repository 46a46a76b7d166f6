"""
A small blocking HTTP client for tests and benchmarks: one request, the
whole answer back, on a fresh or a kept connection.
"""

from __future__ import annotations

import http.client
import json
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
