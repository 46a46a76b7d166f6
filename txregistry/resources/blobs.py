# -*- test-case-name: tests.test_api_blobs -*-
"""
C{HEAD}, C{GET} and C{DELETE /v2/<name>/blobs/<digest>}.
"""

from __future__ import annotations

import re

from txregistry.digest import Digest
from txregistry.errors import RANGE_INVALID, UNSUPPORTED
from txregistry.events.event import BLOB_MEDIA_TYPE, DELETE, PULL, content_target, deletion_target
from txregistry.proxy.fetch import BlobFetch
from txregistry.proxy.registry import ProxiedRepository
from txregistry.registry import paths
from txregistry.resources.app import RequestContext, Response

# Range units are case-insensitive (RFC 9110 14.1).
_RANGE = re.compile(r"bytes=(\d*)-(\d*)", re.ASCII | re.IGNORECASE)

# Past the end of any blob or upload (sizes are below 2**63).
_FAR = 10**19


def byte_position(digits: str) -> int:
    """
    The byte position ASCII C{digits} say (in C{Range}, C{Content-Range}):
    its value, or, for one of more than 19 digits, a position past any end,
    which compares as the value would; int() refuses more than 4300 digits.
    """
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) < 20 else _FAR


def _requested_range(header: str | None, size: int) -> tuple[int, int] | None:
    """
    The inclusive byte range a single-range C{Range} header asks for, or
    L{None} to send the whole blob (no header, several ranges, or a header
    that does not parse, which RFC 9110 says to ignore).

    @raise txregistry.errors.RegistryError: RANGE_INVALID (416) when the
        range cannot be satisfied.
    """
    if header is None:
        return None
    found = _RANGE.fullmatch(header.strip())
    if found is None or (not found.group(1) and not found.group(2)):
        return None
    first, last = found.groups()
    unsatisfiable = RANGE_INVALID(
        f"range {header!r} not satisfiable for {size} bytes",
        headers={"Content-Range": f"bytes */{size}"},
    )
    if not first:
        suffix = byte_position(last)
        if suffix == 0:
            raise unsatisfiable
        if size == 0:
            # Satisfiable (RFC 9110 14.1.1), but there is no byte to send:
            # the whole, empty, blob it is.
            return None
        return max(size - suffix, 0), size - 1
    start = byte_position(first)
    end = byte_position(last) if last else size - 1
    if start >= size or end < start:
        raise unsatisfiable
    return start, min(end, size - 1)


def _blob_headers(digest: Digest) -> dict[str, str]:
    return {
        "Content-Type": "application/octet-stream",
        "Docker-Content-Digest": str(digest),
        "ETag": f'"{digest}"',
        "Cache-Control": "max-age=31536000",
        "Accept-Ranges": "bytes",
    }


async def fetch_blob(context: RequestContext) -> Response:
    """
    Serve a blob linked into the repository, whole or one byte range; a
    driver that can presign answers with a redirect unless redirects are
    disabled.  A pull-through cache's blob not cached yet is served while
    it is downloaded.
    """
    digest = context.match.digest
    assert digest is not None
    repository = context.repository
    headers = _blob_headers(digest)
    if isinstance(repository, ProxiedRepository):
        if context.etag_matches(digest):
            return Response(304, headers)
        response = await _from_upstream(context, repository, digest, headers)
        if response is not None:
            return response
    descriptor = await repository.blobs.stat(digest)
    if context.etag_matches(digest):
        return Response(304, headers)
    _notify_pull(context, digest, descriptor.size)
    if not context.app.config.storage.redirect_disabled:
        url = await repository.blobs.driver.redirect_url(
            context.head.method, paths.blob_data(digest)
        )
        if url is not None:
            return Response(307, {"Location": url, "Docker-Content-Digest": str(digest)})
    byte_range = _requested_range(context.head.header("Range"), descriptor.size)
    status, length = _range_headers(byte_range, descriptor.size, headers)
    start = byte_range[0] if byte_range is not None else 0
    if context.head.method == "HEAD":
        return Response(status, headers, stream=(None, length))
    reader = await repository.blobs.blobs.open(digest, start)
    return Response(status, headers, stream=(reader, length))


def _notify_pull(context: RequestContext, digest: Digest, size: int) -> None:
    if context.head.method == "GET" and context.notifying:
        # A pull, redirected or not, as for Distribution.
        name = context.match.name
        assert name is not None
        target = content_target(
            name, BLOB_MEDIA_TYPE, size, digest, context.urls.blob(name, digest)
        )
        context.notify(PULL, target, durable=False)


async def _from_upstream(
    context: RequestContext,
    repository: ProxiedRepository,
    digest: Digest,
    headers: dict[str, str],
) -> Response | None:
    """
    A pull-through cache's answer for a blob it has not cached: upstream's
    size for a C{HEAD}; for a C{GET}, the bytes of the download under way
    (see L{txregistry.proxy.fetch}), from the requested range on.  L{None}
    when the blob is cached: it is served as any other.
    """
    if context.head.method == "HEAD":
        if await repository.cached(digest) is not None:
            return None
        size = await repository.blob_size(digest)
        if size is None:
            # Upstream does not say: the size is known once it is cached.
            fetched = await repository.blob(digest)
            if isinstance(fetched, BlobFetch):
                await fetched.result()
            return None
        byte_range = _requested_range(context.head.header("Range"), size)
        status, length = _range_headers(byte_range, size, headers)
        return Response(status, headers, stream=(None, length))
    fetched = await repository.blob(digest)
    if not isinstance(fetched, BlobFetch):
        return None
    size = fetched.size
    if size is None:
        # No Content-Length to announce: served once stored.
        await fetched.result()
        return None
    byte_range = _requested_range(context.head.header("Range"), size)
    status, length = _range_headers(byte_range, size, headers)
    _notify_pull(context, digest, size)
    start = byte_range[0] if byte_range is not None else 0
    return Response(status, headers, stream=(await fetched.open_reader(start), length))


def _range_headers(
    byte_range: tuple[int, int] | None, size: int, headers: dict[str, str]
) -> tuple[int, int]:
    """The status and length for C{byte_range}, its C{Content-Range} added to C{headers}."""
    if byte_range is None:
        return 200, size
    start, end = byte_range
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return 206, end - start + 1


async def delete_blob(context: RequestContext) -> Response:
    """Unlink a blob from the repository (202), when deletes are enabled."""
    context.check_writable()
    if not context.app.registry.delete_enabled:
        raise UNSUPPORTED("deletes are disabled (storage.delete.enabled is false)")
    digest = context.match.digest
    assert digest is not None
    await context.repository.blobs.unlink(digest)
    name = context.match.name
    assert name is not None
    await context.notify(DELETE, deletion_target(name, digest), durable=True)
    return Response(202, {"Docker-Content-Digest": str(digest)})
