# -*- test-case-name: tests.test_streaming -*-
"""
Streaming request bodies into storage as they arrive.

Twisted buffers a request's whole body (in memory, or a temporary file)
before a resource sees it.  For upload requests, L{StreamingRequest} instead
asks the site, as soon as the headers are in, for an L{UploadBody} that takes
each chunk straight to the storage writer, and stops reading from the
client's socket while more than C{HIGH_WATERMARK} bytes wait for the driver,
until fewer than C{LOW_WATERMARK} do.  Across all uploads, an L{UploadBudget}
bounds what waits in the whole process: past it, every upload stops reading
until the driver has caught up.  Reading is stopped and started through the
channel's C{pause_body} and C{resume_body} (see
L{txregistry.resources.site.RegistryChannel}), which also keep the body's
timeout from counting while the registry is the one not reading.

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
from typing import Any, Protocol, cast

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from txregistry.registry.uploads import UploadAppender

HIGH_WATERMARK = 8 * 1024 * 1024
LOW_WATERMARK = 2 * 1024 * 1024
# What all uploads of a process may hold in memory together, waiting for
# storage (give or take one socket read per upload: see UploadBudget).
UPLOAD_BUDGET = 256 * 1024 * 1024

_log = Logger()


class BodyChannel(Protocol):
    """
    What an upload body asks of its request's channel (a
    L{txregistry.resources.site.RegistryChannel}).
    """

    _handlingRequest: bool

    def pause_body(self) -> None:
        """Stop reading the request body; its timeout stops too."""

    def resume_body(self) -> None:
        """Read the request body again."""


class BodyRouter(Protocol):
    """
    What a site offers L{StreamingRequest}: given the request (headers in,
    body not), its method and its URI, an upload body, or L{None} to let
    Twisted buffer the body.
    """

    def __call__(self, request: Request, method: bytes, uri: bytes) -> UploadBody | None: ...


class UploadBudget:
    """
    The bytes that upload bodies hold in memory, waiting for storage, summed
    over a process's uploads and kept under one bound: a thousand slow
    uploads must not each hold their C{HIGH_WATERMARK}.

    Once the total passes C{limit} the budget is exhausted: every upload
    that receives another chunk stops reading from its client, so the total
    stays under C{limit} plus one socket read per upload.  Once the total
    falls under C{low} (three quarters of C{limit}), the uploads that wait
    are told, and read again unless their own watermark says otherwise.

    @ivar total: the bytes held now.
    @ivar exhausted: whether uploads must stop reading.
    """

    def __init__(self, limit: int = UPLOAD_BUDGET) -> None:
        self.limit = limit
        self.low = limit * 3 // 4
        self.total = 0
        self.exhausted = False
        self._waiting: set[Callable[[], None]] = set()

    def change(self, delta: int) -> None:
        """An upload holds C{delta} bytes more (or fewer, when negative)."""
        self.total += delta
        if self.total > self.limit:
            self.exhausted = True
        elif self.exhausted and self.total < self.low:
            self.exhausted = False
            waiting, self._waiting = self._waiting, set()
            for relieve in waiting:
                relieve()

    def wait(self, relieve: Callable[[], None]) -> None:
        """Call C{relieve} once the budget is no longer exhausted."""
        self._waiting.add(relieve)

    def forget(self, relieve: Callable[[], None]) -> None:
        """Do not call C{relieve} after all (its upload is gone)."""
        self._waiting.discard(relieve)


class UploadBody:
    """
    The body of one upload request, on its way to storage.

    @param prepare: starts the upload's writing side (checks the request,
        resumes or starts the upload, opens the appender); called at once.
    @param on_abort: called with the appender when the client disconnects
        before the body is complete.
    @ivar budget: the process's L{UploadBudget} the bytes waiting here count
        toward (set by the site before the first chunk), or L{None}: the
        watermarks alone.
    """

    budget: UploadBudget | None = None

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
        self._counted = 0  # what the budget knows this body holds
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

    def _account(self) -> None:
        """Tell the budget what this body holds now."""
        budget = self.budget
        if budget is not None:
            buffered = self._buffered
            delta, self._counted = buffered - self._counted, buffered
            if delta:
                # The budget may relieve this very body from inside change().
                budget.change(delta)

    def _relieve(self) -> None:
        self._account()
        if not self._paused or self._buffered >= LOW_WATERMARK:
            return
        budget = self.budget
        if budget is not None and budget.exhausted:
            budget.wait(self._relieve)
            return
        self._paused = False
        channel = cast("BodyChannel | None", self._request.channel)
        # Once the body is complete the channel resumes the transport
        # itself when the response is finished; leave it to it.
        if channel is not None and not channel._handlingRequest:
            channel.resume_body()

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
        self._account()
        if self._paused:
            return
        budget = self.budget
        if budget is not None and budget.exhausted:
            budget.wait(self._relieve)
        elif self._buffered <= HIGH_WATERMARK:
            return
        self._paused = True
        cast(BodyChannel, self._request.channel).pause_body()

    def input_complete(self) -> None:
        """The whole body arrived."""
        self._input_complete = True
        self._maybe_done()

    def connection_lost(self) -> None:
        """The client went away before the whole body arrived."""
        if self.budget is not None:
            self.budget.forget(self._relieve)
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
