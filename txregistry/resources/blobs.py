# -*- test-case-name: tests.test_api_blobs -*-
"""
C{HEAD}, C{GET} and C{DELETE /v2/<name>/blobs/<digest>}.
"""

from __future__ import annotations

import re

from txregistry.digest import Digest
from txregistry.errors import RANGE_INVALID, UNSUPPORTED
from txregistry.events.event import BLOB_MEDIA_TYPE, DELETE, PULL, content_target, deletion_target
from txregistry.registry import paths
from txregistry.resources.app import RequestContext, Response

_RANGE = re.compile(r"bytes=(\d*)-(\d*)", re.ASCII)


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
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise unsatisfiable
        return max(size - suffix, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
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
    disabled.
    """
    digest = context.match.digest
    assert digest is not None
    repository = context.repository
    descriptor = await repository.blobs.stat(digest)
    headers = _blob_headers(digest)
    if context.etag_matches(digest):
        return Response(304, headers)
    if context.head.method == "GET" and context.notifying:
        # A pull, redirected or not, as for Distribution.
        name = context.match.name
        assert name is not None
        target = content_target(
            name, BLOB_MEDIA_TYPE, descriptor.size, digest, context.urls.blob(name, digest)
        )
        context.notify(PULL, target, durable=False)
    if not context.app.config.storage.redirect_disabled:
        url = await repository.blobs.driver.redirect_url(
            context.head.method, paths.blob_data(digest)
        )
        if url is not None:
            return Response(307, {"Location": url, "Docker-Content-Digest": str(digest)})
    byte_range = _requested_range(context.head.header("Range"), descriptor.size)
    status, start, length = 200, 0, descriptor.size
    if byte_range is not None:
        start, end = byte_range
        status, length = 206, end - start + 1
        headers["Content-Range"] = f"bytes {start}-{end}/{descriptor.size}"
    if context.head.method == "HEAD":
        return Response(status, headers, stream=(None, length))
    reader = await repository.blobs.blobs.open(digest, start)
    return Response(status, headers, stream=(reader, length))


async def delete_blob(context: RequestContext) -> Response:
    """Unlink a blob from the repository (202), when deletes are enabled."""
    if not context.app.registry.delete_enabled:
        raise UNSUPPORTED("deletes are disabled (storage.delete.enabled is false)")
    context.check_writable()
    digest = context.match.digest
    assert digest is not None
    await context.repository.blobs.unlink(digest)
    name = context.match.name
    assert name is not None
    await context.notify(DELETE, deletion_target(name, digest), durable=True)
    return Response(202, {"Docker-Content-Digest": str(digest)})
