# -*- test-case-name: tests.test_gc -*-
"""
A lease kept in storage: one process at a time does a job (collect garbage,
purge uploads) among all those sharing the storage, as several registries
behind a load balancer do.

Storage drivers offer no compare-and-swap, so a lease is taken by writing it,
waiting long enough for any process that read it as free just before to
write its own, and reading it back: the last writer holds it, and everyone
else sees that and backs off.  Such a process wrote within one round trip of
its read, so the wait is ten round trips as this holder measures them (at
least half a second): a local disk is not kept waiting for a bucket's
latency, and a slow bucket gets longer.  A lease expires, so a holder that
dies frees it; a holder renews it while it works and stops when a renewal
finds it gone.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.task import deferLater

from txregistry.drivers.errors import PathNotFoundError
from txregistry.interfaces import IStorageDriver

# The wait between writing a lease and reading it back: this many round
# trips of the storage, and no less than this many seconds.
SETTLE_ROUND_TRIPS = 10
MIN_SETTLE = 0.5


@dataclass(frozen=True)
class LeaseRecord:
    """What the lease object holds: who holds it and until when (epoch seconds)."""

    owner: str
    expires: float


def new_owner() -> str:
    """A name for this holder: the host, and a random part unique to it."""
    return f"{socket.gethostname()}/{secrets.token_hex(6)}"


class StorageLease:
    """
    The lease object at C{path}.

    @ivar owner: this holder's name, written into the lease.
    @ivar duration: how long a taking or renewal holds it, in seconds.
    @ivar settle: how long to wait between writing and reading back, in
        seconds; L{None} (the default): L{SETTLE_ROUND_TRIPS} times the
        longer of this taking's read and write, at least L{MIN_SETTLE}.
    """

    def __init__(
        self,
        driver: IStorageDriver,
        path: str,
        reactor: Any,
        *,
        owner: str | None = None,
        duration: float = 600.0,
        settle: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.driver = driver
        self.path = path
        self.owner = owner or new_owner()
        self.duration = duration
        self.settle = settle
        self._reactor = reactor
        self._clock = clock
        self._monotonic = time.monotonic

    async def read(self) -> LeaseRecord | None:
        """The lease as stored, or L{None} when there is none (or it does not parse)."""
        try:
            content = await self.driver.get_content(self.path)
        except PathNotFoundError:
            return None
        try:
            document = json.loads(content)
            return LeaseRecord(str(document["owner"]), float(document["expires"]))
        except (ValueError, KeyError, TypeError):
            return None

    async def _write(self) -> None:
        record = {"owner": self.owner, "expires": self._clock() + self.duration}
        await self.driver.put_content(self.path, json.dumps(record).encode("utf-8"))

    async def acquire(self) -> bool:
        """
        Take the lease unless another holder's has not expired.

        @return: whether this holder has it now.
        """
        began = self._monotonic()
        current = await self.read()
        read_took = self._monotonic() - began
        if current is not None and current.owner != self.owner:
            if current.expires > self._clock():
                return False
        began = self._monotonic()
        await self._write()
        settle = self.settle
        if settle is None:
            round_trip = max(read_took, self._monotonic() - began)
            settle = max(MIN_SETTLE, SETTLE_ROUND_TRIPS * round_trip)
        await deferLater(self._reactor, settle, lambda: None)
        current = await self.read()
        return current is not None and current.owner == self.owner

    async def renew(self) -> bool:
        """
        Extend the lease by L{duration} from now.

        @return: whether this holder still had it (when not, nothing is written).
        """
        current = await self.read()
        if current is None or current.owner != self.owner:
            return False
        await self._write()
        return True

    async def release(self) -> None:
        """Give the lease up, if this holder has it."""
        current = await self.read()
        if current is not None and current.owner == self.owner:
            try:
                await self.driver.delete(self.path)
            except PathNotFoundError:
                pass
