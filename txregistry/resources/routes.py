# -*- test-case-name: tests.test_routes -*-
"""
The v2 API's routes as data (Distribution's ``descriptors.go``), and the
parsing of a request's method, path and query into a L{RequestHead}, done the
same way whether the request is complete or only its headers have arrived.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qs, unquote, urlsplit

from twisted.web.http_headers import Headers

from txregistry.digest import Digest
from txregistry.errors import (
    DIGEST_INVALID,
    MANIFEST_UNKNOWN,
    TAG_INVALID,
    UNSUPPORTED,
    RegistryError,
)
from txregistry.names import TAG, check_repository_name


@dataclass(frozen=True)
class Route:
    """
    One API endpoint.

    @ivar name: what handlers are registered under.
    @ivar pattern: full-matched against the path below C{/v2/}.
    @ivar methods: the methods it answers.
    """

    name: str
    pattern: re.Pattern[str]
    methods: frozenset[str]


def _route(name: str, pattern: str, *methods: str) -> Route:
    return Route(name, re.compile(pattern, re.ASCII | re.DOTALL), frozenset(methods))


# Order matters, as in Distribution: names are greedy, so
# "a/blobs/uploads/blobs/sha256:..." is the blob route of "a/blobs/uploads".
ROUTES: tuple[Route, ...] = (
    _route("base", r"", "GET", "HEAD"),
    _route("catalog", r"_catalog", "GET", "HEAD"),
    _route("tags", r"(?P<name>.+)/tags/list", "GET", "HEAD"),
    _route(
        "manifest", r"(?P<name>.+)/manifests/(?P<reference>[^/]+)", "GET", "HEAD", "PUT", "DELETE"
    ),
    _route("referrers", r"(?P<name>.+)/referrers/(?P<digest>[^/]+)", "GET", "HEAD"),
    _route(
        "blob", r"(?P<name>.+)/blobs/(?P<digest>[A-Za-z0-9_+.-]+:[^/]*)", "GET", "HEAD", "DELETE"
    ),
    _route("upload", r"(?P<name>.+)/blobs/uploads/?", "POST"),
    _route(
        "upload_chunk",
        r"(?P<name>.+)/blobs/uploads/(?P<upload_id>[A-Za-z0-9_-][A-Za-z0-9._-]*)",
        "GET",
        "HEAD",
        "PATCH",
        "PUT",
        "DELETE",
    ),
    # Anything else below blobs/ names a digest that is not one.
    _route("bad_digest", r"(?P<name>.+)/blobs/(?P<digest>[^/]+)", "GET", "HEAD", "DELETE"),
)


@dataclass(frozen=True)
class RouteMatch:
    """
    A route with its parameters, checked: the repository name, the digest
    (of a blob, a referrers subject, or a manifest referenced by digest),
    the tag (of a manifest referenced by tag) and the upload id.
    """

    route: Route
    name: str | None
    digest: Digest | None
    upload_id: str | None
    tag: str | None = None


# The longest path whose match is remembered: longer than any valid
# repository name, reference and upload id together, so that long paths
# (which are mostly errors) cannot fill the memory of matches.
_REMEMBERED_PATH_LENGTH = 512


def match_route(path: str, method: str) -> RouteMatch:
    """
    Find the route for C{path} (the decoded path below C{/v2/}).  The
    routes found lately are remembered (an error is not): a pull asks for
    the same few paths many times.

    @raise RegistryError: NAME_INVALID or DIGEST_INVALID for a bad
        parameter; TAG_INVALID for a manifest reference that is neither a
        tag nor a digest, but MANIFEST_UNKNOWN (404) when C{method} only
        reads; UNSUPPORTED (404) when no route matches, or (405, with
        C{Allow}) when the route does not answer C{method}.
    """
    if len(path) > _REMEMBERED_PATH_LENGTH:
        return _match(path, method)
    return _remembered_match(path, method)


def _match(path: str, method: str) -> RouteMatch:
    """L{match_route}, worked out."""
    for route in ROUTES:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        groups = found.groupdict()
        name = groups.get("name")
        if name is not None:
            check_repository_name(name)
        digest_text = groups.get("digest")
        tag = None
        reference = groups.get("reference")
        if reference is not None:
            if ":" in reference:
                digest_text = reference
            elif TAG.fullmatch(reference):
                tag = reference
            elif method in ("GET", "HEAD"):
                # No manifest can have that name, so none is there: a
                # 404, as pattern-routed registries (Distribution, zot)
                # answer and the OCI conformance suite expects.  Only a
                # PUT (or DELETE) is told what is wrong with the tag.
                raise MANIFEST_UNKNOWN(f"no manifest can be tagged {reference[:150]!r}")
            else:
                raise TAG_INVALID(f"invalid tag: {reference[:150]!r}")
        digest = Digest.parse(digest_text) if digest_text is not None else None
        if route.name == "bad_digest":
            raise DIGEST_INVALID(f"invalid digest: {digest_text!r}")
        if method not in route.methods:
            allowed = ", ".join(sorted(route.methods))
            raise UNSUPPORTED(f"method {method} not allowed here", headers={"Allow": allowed})
        return RouteMatch(route, name, digest, groups.get("upload_id"), tag)
    raise UNSUPPORTED(f"no such endpoint: /v2/{path}", status=404)


_remembered_match = lru_cache(maxsize=1024)(_match)


@dataclass(frozen=True)
class RequestHead:
    """
    What is known of a request once its headers are in.

    @ivar method: the method, upper case.
    @ivar path: the decoded path below the API root C{/v2/}, or L{None}
        when the request is not for the API.
    @ivar query: the query parameters.
    @ivar headers: the request headers.
    """

    method: str
    path: str | None
    query: dict[str, list[str]]
    headers: Headers

    @classmethod
    def parse(cls, method: bytes, uri: bytes, headers: Headers, prefix: str) -> RequestHead:
        """
        Parse a request line's method and URI.

        @param prefix: the configured C{http.prefix}, ending with C{/}.
        """
        api_root = prefix + "v2"
        path: str | None = None
        try:
            parts = urlsplit(uri.decode("latin-1"))
        except ValueError:
            # An authority urlsplit refuses ("//[x/v2/", an unclosed IPv6
            # address): no path of the API's.
            return cls(method.decode("latin-1").upper(), None, {}, headers)
        full_path = unquote(parts.path, errors="replace")
        if full_path == api_root or full_path == api_root + "/":
            path = ""
        elif full_path.startswith(api_root + "/"):
            path = full_path[len(api_root) + 1 :]
        return cls(
            method.decode("latin-1").upper(),
            path,
            parse_qs(parts.query, keep_blank_values=True) if parts.query else {},
            headers,
        )

    def argument(self, name: str) -> str | None:
        """The first value of query parameter C{name}, if any."""
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        """
        The first value of request header C{name}, if any, decoded as
        Latin-1: header bytes need not be UTF-8, and a value that is not
        ASCII is as invalid as any other that does not parse.
        """
        values = self.headers.getRawHeaders(name.encode("ascii"))
        return values[0].decode("latin-1") if values else None


__all__ = ["ROUTES", "RegistryError", "RequestHead", "Route", "RouteMatch", "match_route"]
