# -*- test-case-name: tests.test_routes -*-
"""
The URLs the registry hands out (C{Location} headers): absolute by default,
as Distribution builds them, or relative with C{http.relativeurls}.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property, lru_cache
from urllib.parse import quote, urlencode

from txregistry.digest import Digest
from txregistry.resources.routes import RequestHead


@lru_cache(maxsize=1024)
def _quoted(name: str) -> str:
    """A repository name in a URL path (the same name comes back often)."""
    return quote(name)


def _quoted_state(state: str) -> str:
    """
    A signed upload state in a query: URL-safe base64, whose only character
    a query needs quoted is the padding's C{=}.
    """
    return state.replace("=", "%3D")


class URLBuilder:
    """
    Builds API URLs for one request.

    @param host: C{http.host}, which wins over the request's own host.
    @param prefix: C{http.prefix}, ending with C{/}.
    @param secure: whether the request came over TLS (or a function
        telling it, asked only when a URL is built); as for Distribution,
        its scheme is then C{https}, unless C{X-Forwarded-Proto} says
        otherwise.

    Nothing is worked out until a URL is asked for: most requests need none.
    """

    def __init__(
        self,
        head: RequestHead,
        host: str | None,
        prefix: str,
        relative: bool,
        secure: bool | Callable[[], bool] = False,
    ) -> None:
        self._head = head
        self._host = host
        self._relative = relative
        self._secure = secure
        self._path_root = f"{prefix}v2/"

    @cached_property
    def _root(self) -> str:
        """The API root's URL, ending with C{/}."""
        if self._relative:
            base = ""
        elif self._host is not None:
            base = self._host
        else:
            head = self._head
            secure = self._secure() if callable(self._secure) else self._secure
            scheme = head.header("X-Forwarded-Proto") or ("https" if secure else "http")
            authority = head.header("X-Forwarded-Host") or head.header("Host") or "localhost"
            base = f"{scheme.split(',')[0].strip()}://{authority.split(',')[0].strip()}"
        return f"{base}{self._path_root}"

    def blob(self, name: str, digest: Digest) -> str:
        """The URL of a blob."""
        return f"{self._root}{_quoted(name)}/blobs/{digest}"

    def manifest(self, name: str, digest: Digest) -> str:
        """The URL of a manifest, by digest."""
        return f"{self._root}{_quoted(name)}/manifests/{digest}"

    def next_page(self, path: str, last: str, count: int) -> str:
        """
        The C{Link} header value for the next page of a list (relative, as
        Distribution's): C{path} is below C{/v2/}.
        """
        query = urlencode({"last": last, "n": count})
        return f'<{self._path_root}{path}?{query}>; rel="next"'

    def upload(self, name: str, upload_id: str, state: str) -> str:
        """The URL of an upload in progress, with its signed state."""
        query = f"_state={_quoted_state(state)}"
        return f"{self._root}{_quoted(name)}/blobs/uploads/{upload_id}?{query}"
