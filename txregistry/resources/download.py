# -*- test-case-name: tests.test_download -*-
"""
Sending a stored blob to a client: a push producer that reads large chunks
from the driver, one read ahead of the network, and stops reading while the
client's socket is full or once the client has gone.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

from txregistry.interfaces import IFileReader

READ_SIZE = 1024 * 1024


@implementer(IPushProducer)
class BlobStreamer:
    """
    Streams C{length} bytes from C{reader} into C{request}.

    At most one chunk waits in memory beside what the transport buffers:
    while the transport is paused, the next chunk is read and held.
    """

    def __init__(self, request: Request, reader: IFileReader, length: int) -> None:
        self._request = request
        self._reader = reader
        self._remaining = length
        self._paused = False
        self._stopped = False
        self._reading = False
        self._held: bytes | None = None
        self._done: Deferred[None] = Deferred()

    def stream(self) -> Deferred[None]:
        """
        Start streaming.

        @return: fires when every byte was handed to the transport (the
            request is not finished), or when the client went away; fails
            when the driver fails.
        """
        self._request.registerProducer(self, True)
        self._pump()
        return self._done

    def _pump(self) -> None:
        if self._stopped:
            return
        if self._held is not None and not self._paused:
            data, self._held = self._held, None
            self._request.write(data)
        if self._remaining == 0 and self._held is None and not self._reading:
            self._finish(None)
            return
        if self._reading or self._held is not None or self._remaining == 0:
            return
        self._reading = True
        self._reader.read(min(READ_SIZE, self._remaining)).addCallbacks(
            self._read_done, self._read_failed
        )

    def _read_done(self, data: bytes) -> None:
        self._reading = False
        if self._stopped:
            return
        if not data:
            self._finish(Failure(EOFError("blob ended before its stored size")))
            return
        data = data[: self._remaining]
        self._remaining -= len(data)
        self._held = data
        self._pump()

    def _read_failed(self, failure: Failure) -> None:
        self._reading = False
        self._finish(failure)

    def _finish(self, outcome: Any) -> None:
        if self._done.called:
            return
        self._stopped = True
        if self._request.producer is self and self._request.channel is not None:
            self._request.unregisterProducer()
        self._reader.close()
        self._done.callback(None) if outcome is None else self._done.errback(outcome)

    def pauseProducing(self) -> None:
        """The transport is full: hold the next chunk."""
        self._paused = True

    def resumeProducing(self) -> None:
        """The transport drained: send what is held and read on."""
        self._paused = False
        self._pump()

    def stopProducing(self) -> None:
        """The client went away: stop reading."""
        self._finish(None)
