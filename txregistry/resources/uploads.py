# -*- test-case-name: tests.test_api_uploads -*-
"""
Blob uploads: C{POST /v2/<name>/blobs/uploads/} (start, monolithic with
C{?digest=}, or cross-repository mount), and C{GET}, C{PATCH}, C{PUT},
C{DELETE /v2/<name>/blobs/uploads/<id>}.

Bodies of C{PATCH}, C{PUT} and monolithic C{POST} stream to storage while
they arrive (see L{txregistry.resources.streaming}); L{prepare_write} checks
the request and opens the upload before the first byte is read, and the
handler finishes the work once the last byte is in.
"""

from __future__ import annotations

import re

from twisted.logger import Logger

from txregistry.auth.access import repository_access
from txregistry.digest import CANONICAL_ALGORITHM, Digest
from txregistry.drivers.errors import StorageFullError
from txregistry.errors import (
    BLOB_UPLOAD_INVALID,
    DIGEST_INVALID,
    RANGE_INVALID,
    SIZE_INVALID,
)
from txregistry.events.event import BLOB_MEDIA_TYPE, MOUNT, PUSH, content_target
from txregistry.names import check_repository_name
from txregistry.registry.blobs import BlobDescriptor
from txregistry.registry.uploads import UploadAppender, UploadSession
from txregistry.resources.app import BodyHandler, RequestContext, Response
from txregistry.resources.blobs import byte_position
from txregistry.resources.streaming import UploadBody
from txregistry.resources.upload_state import UploadState

_log = Logger()

# A PUT or monolithic POST body of at most this many bytes (by its
# Content-Length) is not streamed: Twisted holds it in memory (up to 100 000
# bytes it does so, past that in a file) and the blob is stored in one batch
# of writes.  Streaming it costs a trip to the thread pool for each of
# opening, writing and closing the upload's file, which is most of a small
# blob's push (signatures, SBOMs, attestations, a config).
SMALL_BODY = 64 * 1024

_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?", re.ASCII)


def _upload_headers(context: RequestContext, session: UploadSession) -> dict[str, str]:
    state = context.app.signer.pack(
        UploadState(session.repository, session.upload_id, session.size, session.started_at)
    )
    return {
        "Location": context.urls.upload(session.repository, session.upload_id, state),
        "Range": f"0-{max(session.size - 1, 0)}",
        "Docker-Upload-UUID": session.upload_id,
    }


async def _created(
    context: RequestContext, descriptor: BlobDescriptor, mounted_from: str | None = None
) -> Response:
    """201 for a blob pushed or mounted, once its event is stored."""
    name = context.match.name
    assert name is not None
    location = context.urls.blob(name, descriptor.digest)
    if context.notifying:
        target = content_target(
            name,
            BLOB_MEDIA_TYPE,
            descriptor.size,
            descriptor.digest,
            location,
            from_repository=mounted_from,
        )
        await context.notify(PUSH if mounted_from is None else MOUNT, target, durable=True)
    return Response(201, {"Location": location, "Docker-Content-Digest": str(descriptor.digest)})


def _required_digest(context: RequestContext) -> Digest:
    text = context.head.argument("digest")
    if not text:
        raise DIGEST_INVALID("digest missing")
    return Digest.parse(text)


async def _resume(context: RequestContext, check_offset: bool) -> UploadSession:
    """
    The upload the URL names, checked against its signed C{_state} when the
    URL carries one (Distribution's Location URLs do; a bare URL is accepted
    since the upload's state is in storage anyway).
    """
    upload_id = context.match.upload_id
    name = context.match.name
    assert upload_id is not None and name is not None
    token = context.head.argument("_state")
    state = context.app.signer.unpack(token) if token is not None else None
    if state is not None and (state.name != name or state.upload_id != upload_id):
        raise BLOB_UPLOAD_INVALID("upload state does not match the URL")
    session = await context.repository.uploads.resume(upload_id)
    if check_offset and state is not None and state.offset != session.size:
        raise RANGE_INVALID(
            f"upload state says {state.offset} bytes were received, storage has {session.size}",
            headers=_upload_headers(context, session),
        )
    return session


def _check_content_range(context: RequestContext, session: UploadSession) -> None:
    """
    A chunk's C{Content-Range} must start where the upload ends (416
    otherwise, with the upload's headers so the client can resume), and
    agree with C{Content-Length} (SIZE_INVALID otherwise).
    """
    header = context.head.header("Content-Range")
    if header is None:
        return
    found = _CONTENT_RANGE.fullmatch(header.strip())
    if found is None:
        raise RANGE_INVALID(
            f"Content-Range {header!r} does not parse", headers=_upload_headers(context, session)
        )
    start, end = byte_position(found.group(1)), byte_position(found.group(2))
    if start > end or start != session.size:
        raise RANGE_INVALID(
            f"chunk {start}-{end} does not start at the upload's end, {session.size}",
            headers=_upload_headers(context, session),
        )
    length = context.head.header("Content-Length")
    if length is not None and length.strip().isdigit() and int(length) != end - start + 1:
        raise SIZE_INVALID(f"Content-Length {length} does not match Content-Range {header}")


async def prepare_write(context: RequestContext) -> UploadAppender:
    """
    Check a request that brings upload bytes and open the upload for them,
    before any byte is read: a monolithic C{POST} starts a new upload,
    C{PATCH} and C{PUT} continue the one in the URL.
    """
    context.check_writable()
    if context.head.method == "POST":
        digest = _required_digest(context)
        session = await context.repository.uploads.start()
        return await session.open_appender(digest.algorithm)
    algorithm = CANONICAL_ALGORITHM
    if context.head.method == "PUT":
        algorithm = _required_digest(context).algorithm
    session = await _continued(context)
    return await session.open_appender(algorithm)


async def _continued(context: RequestContext) -> UploadSession:
    """
    The upload a C{PATCH} or C{PUT} brings bytes to, checked against its
    signed state and the request's C{Content-Range}.
    """
    session = await _resume(context, check_offset=True)
    _check_content_range(context, session)
    return session


async def abort_write(context: RequestContext, appender: UploadAppender) -> None:
    """
    The client left before its body was complete: keep what arrived of a
    chunk, so it can resume, and drop a monolithic upload (and any upload
    that found the storage full, which its appender dropped).
    """
    try:
        await appender.close()
    except StorageFullError as error:
        _log.warn("storage full, upload abandoned by its client: {error}", error=error)
        return
    if context.head.method == "POST":
        await appender.session.cancel()


async def _appender(context: RequestContext) -> UploadAppender:
    body: UploadBody | None = getattr(context.request, "upload_body", None)
    if body is not None:
        return await body.result()
    appender = await prepare_write(context)
    appender.write(_buffered_body(context))
    return appender


def _buffered_body(context: RequestContext) -> bytes:
    """The request's body, which Twisted held (it was not streamed)."""
    content = context.request.content
    if content is None:
        return b""
    content.seek(0)
    body: bytes = content.read()
    return body


def _streams_upload_body(context: RequestContext) -> bool:
    method = context.head.method
    if method == "POST" and (context.head.argument("digest") is None or _is_mount(context)):
        return False
    return method == "PATCH" or not _is_small(context)


def _is_small(context: RequestContext) -> bool:
    """Whether the request says its body is at most L{SMALL_BODY} bytes."""
    if context.head.header("Transfer-Encoding") is not None:
        return False
    length = context.head.header("Content-Length")
    return length is not None and length.strip().isdigit() and int(length) <= SMALL_BODY


def _is_mount(context: RequestContext) -> bool:
    return bool(context.head.argument("mount")) and bool(context.head.argument("from"))


async def start_upload(context: RequestContext) -> Response:
    """
    C{POST}: mount a blob from another repository (201), upload a whole blob
    in this request (C{?digest=}, 201), or start an upload (202).
    """
    context.check_writable()
    repository = context.repository
    if _is_mount(context):
        source = check_repository_name(context.head.argument("from") or "")
        digest = Digest.parse(context.head.argument("mount") or "")
        # Without pull on the source, the mount is a plain upload: the
        # client learns nothing of what the source holds.
        if await context.may(repository_access(source, "pull")):
            source_blobs = context.app.registry.repository(source).blobs
            descriptor = await repository.blobs.mount(source_blobs, digest)
            if descriptor is not None:
                return await _created(context, descriptor, mounted_from=source)
    elif context.head.argument("digest") is not None:
        return await _finish_upload(context, monolithic=True)
    session = await repository.uploads.start()
    return Response(202, _upload_headers(context, session))


async def upload_status(context: RequestContext) -> Response:
    """C{GET}: how much of the upload is stored (204, C{Range})."""
    session = await _resume(context, check_offset=False)
    return Response(204, _upload_headers(context, session))


async def append_chunk(context: RequestContext) -> Response:
    """C{PATCH}: append a chunk, or a stream of unknown length (202)."""
    appender = await _appender(context)
    await appender.close()
    return Response(202, _upload_headers(context, appender.session))


async def complete_upload(context: RequestContext) -> Response:
    """C{PUT ?digest=}: append an optional last chunk, verify, commit (201)."""
    return await _finish_upload(context, monolithic=False)


async def _finish_upload(context: RequestContext, monolithic: bool) -> Response:
    digest = _required_digest(context)
    if getattr(context.request, "upload_body", None) is None:
        # A small body, held whole: stored in one batch of writes.
        context.check_writable()
        content = _buffered_body(context)
        if monolithic:
            descriptor = await context.repository.uploads.put_whole(content, digest)
        else:
            session = await _continued(context)
            descriptor = await session.commit_bytes(content, digest)
        return await _created(context, descriptor)
    appender = await _appender(context)
    try:
        await appender.close()
    except Exception:
        if monolithic:
            await appender.session.discard()  # gone already if storage was full
        raise
    return await _created(context, await appender.session.commit(digest))


async def cancel_upload(context: RequestContext) -> Response:
    """C{DELETE}: abandon the upload and delete its bytes (204)."""
    context.check_writable()
    session = await _resume(context, check_offset=False)
    await session.cancel()
    return Response(204, {"Docker-Upload-UUID": session.upload_id})


UPLOAD_BODY = BodyHandler(_streams_upload_body, prepare_write, abort_write)
