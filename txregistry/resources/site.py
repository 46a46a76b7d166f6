# -*- test-case-name: tests.test_api -*-
"""
The site: the resource tree (C{http.prefix}, then C{v2/}), the route table
with its handlers, and the streaming request factory.
"""

from __future__ import annotations

from typing import Any

from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from txregistry.config import Config
from txregistry.interfaces import IAccessController
from txregistry.registry.repository import Registry
from txregistry.resources import base, blobs, catalog, manifests, referrers, tags, uploads
from txregistry.resources.app import BodyHandler, Handler, RegistryApp, V2Resource
from txregistry.resources.streaming import StreamingRequest, UploadBody

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


class RegistryChannel(http.HTTPChannel):
    """
    An HTTP/1.1 channel that refuses a TLS handshake at once.  Clients of
    the containers family (skopeo, podman, buildah) try HTTPS first even for
    insecure registries and fall back to HTTP only when that fails; without
    an answer they wait for their TLS timeout (10 s) on every command.

    With C{http.tls} the channel sits behind TLS and sees decrypted bytes,
    which never start with a handshake record; a plain-HTTP request to a TLS
    port is answered by the TLS layer (see L{txregistry.tls}).
    """

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

    def dataReceived(self, data: bytes) -> None:
        """Refuse a TLS ClientHello; hand anything else to HTTP."""
        if self._first_bytes and data:
            self._first_bytes = False
            if data[0] == _TLS_HANDSHAKE_RECORD:
                assert self.transport is not None
                self.transport.write(_TLS_ON_PLAIN_PORT)
                self.transport.loseConnection()
                return
        super().dataReceived(data)


class RegistrySite(Site):
    """
    A L{Site} whose upload requests stream their bodies to storage.

    @ivar app: the API.
    """

    # Twisted types this as its HTTP/1.1-or-2 wrapper; a plain channel is
    # what it builds when h2 is not negotiated, which it never is here.
    protocol = RegistryChannel  # type: ignore[assignment]
    requestFactory = StreamingRequest

    def __init__(self, resource: Resource, app: RegistryApp, access_log: bool) -> None:
        super().__init__(resource)
        self.app = app
        self._access_log = access_log

    def body_router(self, request: Request, method: bytes, uri: bytes) -> UploadBody | None:
        """See L{txregistry.resources.streaming.BodyRouter}."""
        return self.app.body_router(request, method, uri)

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
    return RegistrySite(root, app, access_log=not config.log.accesslog_disabled)
