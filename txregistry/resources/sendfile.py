# -*- test-case-name: tests.test_download -*-
"""
Sending a blob that lies in a local file with C{sendfile(2)}: the kernel
copies it from the page cache to the socket, as Go's C{io.Copy} does for
Distribution, instead of reading it into Python and writing it out again.

Twisted has no public hook for this.  We rely on these attributes of
L{twisted.internet.abstract.FileDescriptor}, pinned by
C{tests/test_download.py}: C{dataBuffer}, C{offset} and C{_tempDataBuffer}
(whatever Twisted still has to send, the response headers, goes first) and
C{producerPaused} (set, with C{startWriting}, so that the transport calls
our C{resumeProducing} once the socket is writable again).  A transport
without them gets the ordinary L{BlobStreamer}, and so does any TLS
transport, even one that is a socket's descriptor with TLS inside (as
Twisted's C{ssl:} endpoints make): the bytes must go through TLS.

A file still being written (an L{IGrowingFileReader}: a pull-through
cache's download) is sent up to what it holds, and the streamer waits for
it to grow before it sends more.

Each C{sendfile} runs in the thread pool, since a file not in the page
cache blocks on the disk, on a duplicate of the socket's descriptor, so
that a connection closed meanwhile can never let the number be reused under
us.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.python.failure import Failure
from twisted.web.server import Request
from zope.interface import implementer

from txregistry.interfaces import IGrowingFileReader, ILocalFileReader
from txregistry.threads import in_thread

# The most one thread hop sends: enough to amortise the hop, small enough
# that a client on a fast link does not hold a thread for long.
SEND_PER_HOP = 8 * 1024 * 1024


def sendfile_transport(request: Request) -> FileDescriptor | None:
    """The request's transport, when a blob may be sent to it with sendfile."""
    channel = request.channel
    transport = getattr(channel, "transport", None)
    if ISSLTransport.providedBy(transport):
        return None
    if not isinstance(transport, FileDescriptor) or not hasattr(transport, "getHandle"):
        return None
    if not isinstance(transport.getHandle(), socket.socket):
        return None
    required = ("dataBuffer", "offset", "_tempDataBuffer", "producerPaused")
    if not all(hasattr(transport, name) for name in required):
        return None
    return transport


def _send(socket_fd: int, file_fd: int, offset: int, count: int) -> tuple[int, bool]:
    """Send up to C{count} bytes; how many went, and whether the socket is full."""
    sent = 0
    while sent < count:
        try:
            done = os.sendfile(socket_fd, file_fd, offset + sent, min(count - sent, SEND_PER_HOP))
        except BlockingIOError:
            return sent, True
        if done == 0:
            raise EOFError("blob ended before its stored size")
        sent += done
        if sent >= SEND_PER_HOP:
            break
    return sent, False


@implementer(IPushProducer)
class SendfileStreamer:
    """
    Streams C{length} bytes of C{reader}'s file into C{request}'s socket,
    then closes the reader.
    """

    def __init__(
        self,
        request: Request,
        transport: FileDescriptor,
        reader: ILocalFileReader,
        length: int,
    ) -> None:
        self._request = request
        self._transport = transport
        self._reader = reader
        self._file_fd, self._offset = reader.local_file()
        self._growing = IGrowingFileReader(reader, None)
        self._waiting = False
        self._remaining = length
        self._socket_fd = -1
        self._sending = False
        self._stopped = False
        self._done: Deferred[None] = Deferred()

    def stream(self) -> Deferred[None]:
        """
        Send the headers, then the bytes.

        @return: fires when every byte was sent or the client went away;
            fails when sending fails otherwise.
        """
        self._socket_fd = os.dup(self._transport.fileno())
        self._request.registerProducer(self, True)
        self._request.write(b"")  # the headers, into Twisted's buffer
        self._when_writable()
        return self._done

    def _twisted_buffer_empty(self) -> bool:
        transport: Any = self._transport
        return not transport._tempDataBuffer and transport.offset == len(transport.dataBuffer)

    def _when_writable(self) -> None:
        # The transport flushes what it holds, and once its socket takes more
        # it calls resumeProducing (see FileDescriptor.doWrite).
        transport: Any = self._transport
        transport.producerPaused = True
        transport.startWriting()

    def resumeProducing(self) -> None:
        """The socket can take more: send the next part in a thread."""
        if self._stopped or self._sending:
            return
        if not self._twisted_buffer_empty():
            self._when_writable()
            return
        if self._remaining == 0:
            self._finish(None)
            return
        count = self._remaining
        if self._growing is not None:
            try:
                count = min(count, self._growing.readable_end() - self._offset)
            except Exception:
                self._finish(Failure())
                return
            if count <= 0:
                if not self._waiting:
                    self._waiting = True
                    self._growing.grown().addCallbacks(self._grew, self._finish)
                return
        self._sending = True
        in_thread(_send, self._socket_fd, self._file_fd, self._offset, count).addCallbacks(
            self._sent, self._failed
        )

    def _grew(self, _: object) -> None:
        self._waiting = False
        self.resumeProducing()

    def _sent(self, result: tuple[int, bool]) -> None:
        self._sending = False
        sent, full = result
        self._offset += sent
        self._remaining -= sent
        self._request.sentLength += sent
        if self._stopped:
            self._finish(None)
        elif self._remaining == 0:
            self._finish(None)
        elif full:
            self._when_writable()
        else:
            self.resumeProducing()

    def _failed(self, failure: Failure) -> None:
        self._sending = False
        if failure.check(BrokenPipeError, ConnectionResetError):
            self._finish(None)  # the client went away
        else:
            self._finish(failure)

    def pauseProducing(self) -> None:
        """Nothing to do: bytes go out only when the socket is writable."""

    def stopProducing(self) -> None:
        """The client went away."""
        self._stopped = True
        if not self._sending:
            self._finish(None)

    def _finish(self, outcome: Failure | None) -> None:
        if self._done.called:
            return
        self._stopped = True
        if self._request.producer is self and self._request.channel is not None:
            self._request.unregisterProducer()
        if self._socket_fd >= 0:
            os.close(self._socket_fd)
            self._socket_fd = -1
        self._reader.close()
        if outcome is None:
            self._done.callback(None)
        else:
            self._done.errback(outcome)
