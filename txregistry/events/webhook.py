# -*- test-case-name: tests.test_events -*-
"""
The C{webhook} event sink: Distribution's HTTP sink, over treq.  A batch is
one C{POST} of the envelope to the endpoint's C{url}, with its C{headers};
a 2xx or 3xx answer within C{timeout} delivers it, as for Distribution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import treq
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from zope.interface import implementer

from txregistry.config.core import ConfigError
from txregistry.config.notifications import EndpointConfig
from txregistry.events.event import EVENTS_MEDIA_TYPE, envelope
from txregistry.interfaces import IEventSink


class DeliveryFailed(Exception):
    """The receiver answered, but not with a success."""


@implementer(IEventSink)
class WebhookSink:
    """Posts batches of events to one endpoint."""

    def __init__(self, endpoint: EndpointConfig, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.endpoint = endpoint
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 1
        self._headers = Headers(
            {
                name.encode("latin-1"): [value.encode("latin-1") for value in values]
                for name, values in endpoint.headers.items()
            }
        )
        self._headers.setRawHeaders(b"Content-Type", [EVENTS_MEDIA_TYPE.encode("ascii")])
        self._reactor = reactor
        self._client = HTTPClient(Agent(reactor, pool=self._pool))

    def write(self, events: Sequence[Mapping[str, Any]]) -> Deferred[None]:
        """See L{IEventSink.write}: the answer, body and all, within C{timeout}."""
        posting = ensureDeferred(self._post(envelope(events)))
        return posting.addTimeout(self.endpoint.timeout, self._reactor)

    async def _post(self, body: bytes) -> None:
        response = await self._client.post(self.endpoint.url, data=body, headers=self._headers)
        # Read the answer whole, so the connection can be used again.
        await treq.content(response)
        if not 200 <= response.code < 400:
            raise DeliveryFailed(f"{self.endpoint.url} answered {response.code}")

    def close(self) -> Deferred[None]:
        """See L{IEventSink.close}."""
        closed: Deferred[None] = self._pool.closeCachedConnections()
        return closed if closed is not None else succeed(None)


class WebhookSinkFactory:
    """Makes L{WebhookSink}s: the C{webhook} plugin (every endpoint's sink unless named)."""

    name = "webhook"

    def create(self, endpoint: Any) -> IEventSink:
        """See L{txregistry.interfaces.IEventSinkFactory.create}: no options."""
        assert isinstance(endpoint, EndpointConfig)
        for key in endpoint.options:
            raise ConfigError(f"options.{key}", "unknown key (the webhook sink takes none)")
        return WebhookSink(endpoint)
