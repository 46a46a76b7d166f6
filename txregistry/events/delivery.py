# -*- test-case-name: tests.test_events -*-
"""
Delivering one endpoint's events from the outbox to its sink: in order, a
batch at a time, again and again until the sink takes it (at least once);
after C{threshold} failures in a row, waiting C{backoff} between tries, as
Distribution's retrying sink.  Each endpoint has its own loop, so a slow or
dead one holds up no request and no other endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from txregistry.config.notifications import EndpointConfig
from txregistry.events.event import EncodedEvents
from txregistry.events.outbox import Outbox
from txregistry.interfaces import IEventSink

_log = Logger()

# The most events one delivery carries (about 600 KB of JSON).
BATCH = 1000
# The pause between two tries before the threshold is reached: enough that
# a receiver failing fast is not hammered.
RETRY_PAUSE = 0.1
# How long new events gather before they are read and sent, so that a busy
# registry sends a few large batches rather than many small ones (under a
# load of manifest GETs, sending each event as it came cost a third of the
# requests/s; batches of 100 every 50 ms still a tenth: each POST costs
# about 1.5 ms of the registry's CPU.  The requests never wait for it).
LINGER = 0.25


@dataclass
class EndpointCounters:
    """What one endpoint has done, for the metrics."""

    pending: int = 0  # stored since start-up, not yet delivered nor ignored
    delivered: int = 0
    failed: int = 0  # deliveries that failed (each retry counts)
    ignored: int = 0
    last_status: str = ""  # "delivered", or the last failure


def wanted(endpoint: EndpointConfig, event: dict[str, Any]) -> bool:
    """Whether C{endpoint} takes C{event} (its C{ignoredmediatypes} and C{ignore})."""
    media_type = event.get("target", {}).get("mediaType")
    if media_type is not None and (
        media_type in endpoint.ignored_media_types or media_type in endpoint.ignore.media_types
    ):
        return False
    return event.get("action") not in endpoint.ignore.actions


class EndpointDelivery:
    """The loop that delivers C{endpoint}'s events from C{outbox} to C{sink}."""

    def __init__(
        self, endpoint: EndpointConfig, sink: IEventSink, outbox: Outbox, reactor: Any
    ) -> None:
        self.endpoint = endpoint
        self.sink = sink
        self.outbox = outbox
        self.counters = EndpointCounters()
        self._reactor = reactor
        self._running: Deferred[None] | None = None
        self._wake: Deferred[None] | None = None
        self._writes = 0  # the outbox's writes seen, so that none is missed
        self._stopping = False
        # Whether any event may be ignored (else none is parsed to see).
        self._filters = bool(
            endpoint.ignored_media_types or endpoint.ignore.media_types or endpoint.ignore.actions
        )
        outbox.on_append(self._new_events)

    def start(self) -> None:
        """Deliver from now on."""
        self._running = ensureDeferred(self._run())
        self._running.addErrback(self._crashed)

    def _crashed(self, failure: Any) -> None:
        if not failure.check(CancelledError):
            _log.failure(
                "notifications: delivery to {endpoint} stopped",
                failure,
                endpoint=self.endpoint.name,
            )

    def _new_events(self, count: int) -> None:
        self.counters.pending += count
        self._writes += 1
        wake, self._wake = self._wake, None
        if wake is not None:
            wake.callback(None)

    async def _run(self) -> None:
        position = self.outbox.cursor(self.endpoint.name)
        while not self._stopping:
            writes = self._writes
            records = await self.outbox.read(position, BATCH)
            if not records:
                if self._writes != writes:
                    continue  # written while it was read: read again
                self._wake = Deferred()
                await self._wake
                await deferLater(self._reactor, LINGER, lambda: None)
                continue
            lines = [record.line.rstrip(b"\n") for record in records]
            if self._filters:
                lines = [line for line in lines if wanted(self.endpoint, orjson.loads(line))]
            self.counters.ignored += len(records) - len(lines)
            if lines:
                await self._deliver(EncodedEvents(lines))
            position = records[-1].after
            self.counters.pending = max(self.counters.pending - len(records), 0)
            await self.outbox.delivered(self.endpoint.name, position)

    async def _deliver(self, batch: EncodedEvents) -> None:
        failures = 0
        while True:
            try:
                await self.sink.write(batch)
            except CancelledError:
                raise
            except Exception as error:
                failures += 1
                self.counters.failed += 1
                self.counters.last_status = f"{type(error).__name__}: {error}"
                if failures == self.endpoint.threshold:
                    _log.warn(
                        "notifications: {endpoint} failed {count} times in a row "
                        "({error}); retrying every {backoff} s",
                        endpoint=self.endpoint.name,
                        count=failures,
                        error=self.counters.last_status,
                        backoff=self.endpoint.backoff,
                    )
                pause = (
                    self.endpoint.backoff if failures >= self.endpoint.threshold else RETRY_PAUSE
                )
                await deferLater(self._reactor, pause, lambda: None)
                continue
            if failures >= self.endpoint.threshold:
                _log.info(
                    "notifications: {endpoint} takes events again", endpoint=self.endpoint.name
                )
            self.counters.delivered += len(batch)
            self.counters.last_status = "delivered"
            return

    def stop(self) -> Deferred[None]:
        """Stop delivering (what is not delivered stays in the outbox), and close the sink."""
        self._stopping = True
        if self._running is not None:
            self._running.cancel()
        return self.sink.close()
