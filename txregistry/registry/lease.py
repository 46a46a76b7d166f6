# -*- test-case-name: tests.test_gc -*-
"""
A lease kept in storage: one process at a time does a job (collect garbage,
purge uploads) among all those sharing the storage, as several registries
behind a load balancer do.

Storage drivers offer no compare-and-swap, so a lease is taken by writing it,
waiting long enough for any process that read it as free just before to
write its own, and reading it back: the last writer holds it, and everyone
else sees that and backs off.  A lease expires, so a holder that dies frees
it; a holder renews it while it works and stops when a renewal finds it gone.
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
    @ivar settle: how long to wait between writing and reading back.
    """

    def __init__(
        self,
        driver: IStorageDriver,
        path: str,
        reactor: Any,
        *,
        owner: str | None = None,
        duration: float = 600.0,
        settle: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.driver = driver
        self.path = path
        self.owner = owner or new_owner()
        self.duration = duration
        self.settle = settle
        self._reactor = reactor
        self._clock = clock

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
        current = await self.read()
        if current is not None and current.owner != self.owner:
            if current.expires > self._clock():
                return False
        await self._write()
        await deferLater(self._reactor, self.settle, lambda: None)
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
