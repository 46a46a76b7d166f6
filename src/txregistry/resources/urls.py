# -*- test-case-name: tests.test_routes -*-
"""
The URLs the registry hands out (C{Location} headers): absolute by default,
as Distribution builds them, or relative with C{http.relativeurls}.
"""

from __future__ import annotations

from urllib.parse import quote

from txregistry.digest import Digest
from txregistry.resources.routes import RequestHead


class URLBuilder:
    """
    Builds API URLs for one request.

    @param host: C{http.host}, which wins over the request's own host.
    @param prefix: C{http.prefix}, ending with C{/}.
    """

    def __init__(self, head: RequestHead, host: str | None, prefix: str, relative: bool) -> None:
        if relative:
            base = ""
        elif host is not None:
            base = host
        else:
            scheme = head.header("X-Forwarded-Proto") or "http"
            authority = head.header("X-Forwarded-Host") or head.header("Host") or "localhost"
            base = f"{scheme.split(',')[0].strip()}://{authority.split(',')[0].strip()}"
        self._root = f"{base}{prefix}v2/"

    def blob(self, name: str, digest: Digest) -> str:
        """The URL of a blob."""
        return f"{self._root}{quote(name)}/blobs/{digest}"

    def upload(self, name: str, upload_id: str, state: str) -> str:
        """The URL of an upload in progress, with its signed state."""
        return f"{self._root}{quote(name)}/blobs/uploads/{upload_id}?_state={quote(state, safe='')}"
