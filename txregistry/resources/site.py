# -*- test-case-name: tests.test_api,tests.test_hostile_clients -*-
"""
The site: the resource tree (C{http.prefix}, then C{v2/}), the route table
with its handlers, the streaming request factory, and the channel with its
connection timeouts.
"""

from __future__ import annotations

from typing import Any

from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from txregistry.config import Config
from txregistry.config.http import HTTPConfig
from txregistry.interfaces import IAccessController
from txregistry.registry.repository import Registry
from txregistry.resources import base, blobs, catalog, manifests, referrers, tags, uploads
from txregistry.resources.app import BodyHandler, Handler, RegistryApp, V2Resource
from txregistry.resources.streaming import StreamingRequest, UploadBody, UploadBudget

HANDLERS: dict[tuple[str, str], Handler] = {
    ("base", "GET"): base.api_version_check,
    ("base", "HEAD"): base.api_version_check,
    ("catalog", "GET"): catalog.list_repositories,
    ("catalog", "HEAD"): catalog.list_repositories,
    ("tags", "GET"): tags.list_tags,
    ("tags", "HEAD"): tags.list_tags,
    ("manifest", "GET"): manifests.fetch_manifest,
    ("manifest", "HEAD"): manifests.fetch_manifest,
    ("manifest", "PUT"): manifests.put_manifest,
    ("manifest", "DELETE"): manifests.delete_manifest,
    ("referrers", "GET"): referrers.list_referrers,
    ("referrers", "HEAD"): referrers.list_referrers,
    ("blob", "GET"): blobs.fetch_blob,
    ("blob", "HEAD"): blobs.fetch_blob,
    ("blob", "DELETE"): blobs.delete_blob,
    ("upload", "POST"): uploads.start_upload,
    ("upload_chunk", "GET"): uploads.upload_status,
    ("upload_chunk", "HEAD"): uploads.upload_status,
    ("upload_chunk", "PATCH"): uploads.append_chunk,
    ("upload_chunk", "PUT"): uploads.complete_upload,
    ("upload_chunk", "DELETE"): uploads.cancel_upload,
}

BODY_HANDLERS: dict[tuple[str, str], BodyHandler] = {
    ("upload", "POST"): uploads.UPLOAD_BODY,
    ("upload_chunk", "PATCH"): uploads.UPLOAD_BODY,
    ("upload_chunk", "PUT"): uploads.UPLOAD_BODY,
}


class _Branch(Resource):
    """
    The root, or a segment of C{http.prefix}: paths that lead nowhere are
    answered by the app (404, with the API's headers), not by Twisted.
    """

    def __init__(self, app: RegistryApp) -> None:
        super().__init__()
        self.app = app

    def getChild(self, path: bytes, request: Request) -> Resource:
        """No such child: the app answers."""
        return V2Resource(self.app)

    def render(self, request: Request) -> int:
        """The branch itself is no endpoint either."""
        return self.app.render(request)


# What Go's net/http (and so Distribution) answers to a TLS handshake on a
# plain-HTTP port: a malformed request line.
_TLS_ON_PLAIN_PORT = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n\r\n"
    b"400 Bad Request"
)
_TLS_HANDSHAKE_RECORD = 0x16


# The connection's phases, each with its own timeout on the channel's one
# timer (Twisted's TimeoutMixin).
_IDLE = "idle"  # between requests: http.idletimeout
_HEADERS = "headers"  # a request line and headers arriving: http.readheadertimeout
_BODY = "body"  # a request body arriving: http.bodytimeout, from the last byte
_HANDLING = "handling"  # the whole request is in: no timeout, as in Twisted

_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class RegistryChannel(http.HTTPChannel):
    """
    An HTTP/1.1 channel that bounds how long a client may hold it, and
    refuses a TLS handshake at once.

    Twisted's channel has one timeout, reset by every byte: a client that
    sends its headers a byte at a time, or a body and then nothing, holds
    the connection for ever.  This one keeps Twisted's single timer and
    gives it a period per phase: C{idle_timeout} between requests (Twisted's
    C{timeOut}), C{header_timeout} for the request line and headers, a
    deadline that bytes do not push back (from the connection's opening for
    its first request, as Go's C{ReadHeaderTimeout}), and C{body_timeout}
    for the body, reset by every byte, suspended while the registry itself
    stops reading (L{pause_body}).  A request that times out before it is
    answered gets a 408; the connection is closed.  Besides Twisted's
    documented hooks this relies on its private C{_savedTimeOut} (the period
    restored once a response is sent) and C{_networkProducer}; the
    behaviour is pinned by C{tests/test_hostile_clients.py}.

    The TLS part: clients of the containers family (skopeo, podman,
    buildah) try HTTPS first even for insecure registries and fall back to
    HTTP only when that fails; without an answer they wait for their TLS
    timeout (10 s) on every command.  With C{http.tls} the channel sits
    behind TLS and sees decrypted bytes, which never start with a handshake
    record; a plain-HTTP request to a TLS port is answered by the TLS layer
    (see L{txregistry.tls}).

    @ivar header_timeout: seconds for a request's line and headers, or
        L{None}: then they have the idle timeout, reset by every byte, as
        in Twisted.
    @ivar body_timeout: seconds a request body may go without a byte, or
        L{None}.
    """

    header_timeout: float | None = None
    body_timeout: float | None = None
    _phase = _IDLE
    _idle_timeout: float | None = None
    _first_bytes = True
    _host: Any = None
    _peer: Any = None

    # Twisted asks for both addresses on every request, a system call each;
    # they do not change during a connection.
    def getHost(self) -> Any:
        """The local address, asked of the transport once."""
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def getPeer(self) -> Any:
        """The remote address, asked of the transport once."""
        if self._peer is None:
            self._peer = super().getPeer()
        return self._peer

    # -- the phases ----------------------------------------------------------

    _secure: bool | None = None

    def isSecure(self) -> bool:
        """Whether the connection is over TLS: asked once, as it cannot change."""
        secure = self._secure
        if secure is None:
            secure = self._secure = bool(super().isSecure())
        return secure

    def connectionMade(self) -> None:
        """A client connected: its first request's headers are due."""
        self._idle_timeout = self.timeOut
        super().connectionMade()
        if self.header_timeout is not None:
            self._phase = _HEADERS
            self.setTimeout(self.header_timeout)

    def dataReceived(self, data: bytes) -> None:
        """Refuse a TLS ClientHello; hand anything else to HTTP."""
        if self._first_bytes and data:
            self._first_bytes = False
            if data[0] == _TLS_HANDSHAKE_RECORD:
                assert self.transport is not None
                self.transport.write(_TLS_ON_PLAIN_PORT)
                self.transport.loseConnection()
                return
        if self._phase is _IDLE and data and self.header_timeout is not None:
            self._phase = _HEADERS
            self.setTimeout(self.header_timeout)
        super().dataReceived(data)

    def resetTimeout(self) -> None:
        """
        Twisted's channel calls this on every read: the headers' deadline
        stays where it is; any other phase's timer starts again.
        """
        if self._phase is not _HEADERS:
            super().resetTimeout()

    def allHeadersReceived(self) -> None:
        """The headers are in: a body, if one follows, must keep coming."""
        super().allHeadersReceived()
        if self.length != 0 and self._phase in (_IDLE, _HEADERS):
            self._phase = _BODY
            self.setTimeout(self.body_timeout)

    def allContentReceived(self) -> None:
        """The whole request is in: no timeout while it is answered."""
        self._phase = _HANDLING
        self.setTimeout(None)
        # Twisted saves the period in force to restore it once the response
        # is sent (in requestDone); what follows a response is idleness.
        self._savedTimeOut = self._idle_timeout
        super().allContentReceived()

    def requestDone(self, request: http.Request) -> None:
        """
        The response is sent: idle until the next request's first byte
        (which Twisted may replay at once from what it kept meanwhile).
        """
        self._phase = _IDLE
        super().requestDone(request)

    def pause_body(self) -> None:
        """
        Stop reading the request body (storage is behind): the body's timer
        stops too, since the client is not the one stalling.
        """
        self._networkProducer.pauseProducing()
        if self._phase is _BODY:
            self.setTimeout(None)

    def resume_body(self) -> None:
        """Read the request body again; the client has a whole period."""
        self._networkProducer.resumeProducing()
        if self._phase is _BODY:
            self.setTimeout(self.body_timeout)

    def timeoutConnection(self) -> None:
        """Answer a request cut short with a 408, then close, as Twisted does."""
        if self._phase in (_HEADERS, _BODY) and self.transport is not None:
            # Nothing of this request's response was sent yet; a connection
            # that never started a request is closed without a word.
            if self.requests:
                self.transport.write(_REQUEST_TIMEOUT)
        super().timeoutConnection()


class RegistrySite(Site):
    """
    A L{Site} whose upload requests stream their bodies to storage.

    @ivar app: the API.
    """

    # Twisted types this as its HTTP/1.1-or-2 wrapper; a plain channel is
    # what it builds when h2 is not negotiated, which it never is here.
    protocol = RegistryChannel  # type: ignore[assignment]
    requestFactory = StreamingRequest

    def __init__(
        self,
        resource: Resource,
        app: RegistryApp,
        access_log: bool,
        timeouts: HTTPConfig | None = None,
    ) -> None:
        super().__init__(resource)
        self.app = app
        self._access_log = access_log
        timeouts = timeouts or HTTPConfig()
        self.timeOut = timeouts.idle_timeout  # type: ignore[assignment]
        self.header_timeout = timeouts.read_header_timeout
        self.body_timeout = timeouts.body_timeout
        self.upload_budget = UploadBudget()

    def buildProtocol(self, addr: Any) -> Any:
        """A channel with this site's timeouts (Twisted sets the idle one)."""
        channel = super().buildProtocol(addr)
        channel.header_timeout = self.header_timeout
        channel.body_timeout = self.body_timeout
        return channel

    def body_router(self, request: Request, method: bytes, uri: bytes) -> UploadBody | None:
        """
        See L{txregistry.resources.streaming.BodyRouter}; every upload body
        counts toward this site's L{UploadBudget}.
        """
        body = self.app.body_router(request, method, uri)
        if body is not None:
            body.budget = self.upload_budget
        return body

    def log(self, request: http.Request) -> None:
        """Write the access log line, unless C{log.accesslog.disabled}."""
        if self._access_log:
            super().log(request)


def make_site(
    config: Config,
    registry: Registry,
    secret: bytes,
    access_controller: IAccessController | None = None,
) -> RegistrySite:
    """The whole HTTP side of a registry, behind C{access_controller} if any."""
    app = RegistryApp(config, registry, secret, HANDLERS, BODY_HANDLERS, access_controller)
    root = _Branch(app)
    parent = root
    for segment in config.http.prefix.strip("/").split("/"):
        if segment:
            child = _Branch(app)
            parent.putChild(segment.encode("utf-8"), child)
            parent = child
    parent.putChild(b"v2", V2Resource(app))
    return RegistrySite(root, app, not config.log.accesslog_disabled, config.http)
