# -*- test-case-name: tests.test_streaming -*-
"""
Streaming request bodies into storage as they arrive.

Twisted buffers a request's whole body (in memory, or a temporary file)
before a resource sees it.  For upload requests, L{StreamingRequest} instead
asks the site, as soon as the headers are in, for an L{UploadBody} that takes
each chunk straight to the storage writer, and stops reading from the
client's socket while more than C{HIGH_WATERMARK} bytes wait for the driver,
until fewer than C{LOW_WATERMARK} do.

Twisted has no public hook for this.  We rely on these private attributes of
L{twisted.web.http.HTTPChannel}, all pinned by C{tests/test_streaming.py}:
C{_command} and C{_path} (the request line, known when C{gotLength} is
called), C{_networkProducer} (the transport, to pause and resume) and
C{_handlingRequest} (true once the whole body is in: from then on the
channel resumes the transport itself when the response is finished).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from txregistry.registry.uploads import UploadAppender

HIGH_WATERMARK = 8 * 1024 * 1024
LOW_WATERMARK = 2 * 1024 * 1024

_log = Logger()


class BodyRouter(Protocol):
    """
    What a site offers L{StreamingRequest}: given the request (headers in,
    body not), its method and its URI, an upload body, or L{None} to let
    Twisted buffer the body.
    """

    def __call__(self, request: Request, method: bytes, uri: bytes) -> UploadBody | None: ...


class UploadBody:
    """
    The body of one upload request, on its way to storage.

    @param prepare: starts the upload's writing side (checks the request,
        resumes or starts the upload, opens the appender); called at once.
    @param on_abort: called with the appender when the client disconnects
        before the body is complete.
    """

    def __init__(
        self,
        request: Request,
        prepare: Callable[[], Coroutine[Any, Any, UploadAppender]],
        on_abort: Callable[[UploadAppender], Coroutine[Any, Any, None]],
    ) -> None:
        self._request = request
        self._on_abort = on_abort
        self._early: list[bytes] = []
        self._early_size = 0
        self._appender: UploadAppender | None = None
        self._failure: Failure | None = None
        self._paused = False
        self._input_complete = False
        self._aborted = False
        self._result: Deferred[UploadAppender] = Deferred()
        self.received = 0
        ensureDeferred(prepare()).addCallbacks(self._prepared, self._prepare_failed)

    # -- the appender's side ---------------------------------------------

    def _prepared(self, appender: UploadAppender) -> None:
        self._appender = appender
        appender.on_progress = self._relieve
        early, self._early, self._early_size = self._early, [], 0
        for chunk in early:
            appender.write(chunk)
        if self._aborted or self._result.called:
            # The client left before the upload was open (or the request was
            # given up meanwhile): what it sent is kept all the same, so
            # that it can resume from there, and the appender is closed.
            ensureDeferred(self._on_abort(appender)).addErrback(
                lambda failure: _log.failure("closing an interrupted upload", failure)
            )
            return
        self._maybe_done()

    def _prepare_failed(self, failure: Failure) -> None:
        # The request will be answered with this error; what is left of the
        # body is read and dropped.
        self._failure = failure
        self._early, self._early_size = [], 0
        self._relieve()
        self._maybe_done()

    @property
    def _buffered(self) -> int:
        appender = self._appender
        return self._early_size + (appender.buffered if appender is not None else 0)

    def _relieve(self) -> None:
        if self._paused and self._buffered < LOW_WATERMARK:
            self._paused = False
            channel = self._request.channel
            # Once the body is complete the channel resumes the transport
            # itself when the response is finished; leave it to it.
            if channel is not None and not channel._handlingRequest:
                channel._networkProducer.resumeProducing()

    # -- the client's side -------------------------------------------------

    def write(self, data: bytes) -> None:
        """A chunk of the body arrived."""
        self.received += len(data)
        if self._failure is not None:
            return
        if self._appender is not None:
            self._appender.write(data)
        else:
            self._early.append(data)
            self._early_size += len(data)
        if not self._paused and self._buffered > HIGH_WATERMARK:
            self._paused = True
            self._request.channel._networkProducer.pauseProducing()

    def input_complete(self) -> None:
        """The whole body arrived."""
        self._input_complete = True
        self._maybe_done()

    def connection_lost(self) -> None:
        """The client went away before the whole body arrived."""
        if self._input_complete or self._aborted:
            return
        self._aborted = True
        if self._appender is not None:
            ensureDeferred(self._on_abort(self._appender)).addErrback(
                lambda failure: _log.failure("closing an interrupted upload", failure)
            )

    def _maybe_done(self) -> None:
        if self._result.called or not self._input_complete:
            return
        if self._failure is not None:
            self._result.errback(self._failure)
        elif self._appender is not None:
            self._result.callback(self._appender)

    def result(self) -> Deferred[UploadAppender]:
        """
        Fires with the appender (still open, its writes maybe in flight) once
        the whole body was handed to it, or fails with what stopped the
        preparation.
        """
        return self._result


class StreamingRequest(Request):
    """
    A request that hands the body of upload requests to an L{UploadBody}
    chunk by chunk; every other request is buffered as Twisted does.
    """

    upload_body: UploadBody | None = None

    def gotLength(self, length: int | None) -> None:
        """Headers are in: find out whether the body goes to storage."""
        router: BodyRouter | None = getattr(
            getattr(self.channel, "site", None), "body_router", None
        )
        if length != 0 and router is not None:
            channel = self.channel
            self.upload_body = router(self, channel._command, channel._path)
        if self.upload_body is None:
            super().gotLength(length)
        else:
            self.content = io.BytesIO()

    def handleContentChunk(self, data: bytes) -> None:
        """A chunk of the body arrived."""
        if self.upload_body is None:
            super().handleContentChunk(data)
        else:
            self.upload_body.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """The whole request arrived."""
        if self.upload_body is not None:
            self.upload_body.input_complete()
        super().requestReceived(command, path, version)

    def connectionLost(self, reason: Failure) -> None:
        """The connection closed, maybe in the middle of the body."""
        if self.upload_body is not None:
            self.upload_body.connection_lost()
        super().connectionLost(reason)
