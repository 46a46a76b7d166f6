# -*- test-case-name: tests.test_auth_htpasswd -*-
"""
Keeping a flood of failed logins from slowing good ones, where checking a
password is expensive on purpose (bcrypt).

A L{CredentialCache} remembers credentials found good for a while, so a
client that sends them with every request is checked once.

A L{FairPool} runs at most C{slots} checks at once.  Each client (a peer
address) has a bounded queue of its own; when a slot frees, the pool takes
the next call round-robin among the clients with one waiting.  So a
client's call waits for at most one call of each other client, however many
those clients sent, and a client past its bound is refused at once instead
of waiting behind its own flood.
"""

from __future__ import annotations

import heapq
import hmac
import itertools
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from txregistry.threads import ThreadPool

T = TypeVar("T")

# Runs a call somewhere (a thread), firing with its result on the reactor thread.
Runner = Callable[[Callable[[], Any]], "Deferred[Any]"]


class CredentialCache:
    """
    Good credentials, remembered for a while: the most recently verified
    C{size} of them, each for C{ttl} seconds.  Keyed by an HMAC of user and
    password under a key of this process, so the memory holds no password
    and a lookup's timing depends on nothing an attacker controls.
    """

    def __init__(self, clock: IReactorTime, size: int, ttl: float) -> None:
        self._clock = clock
        self._size = size
        self._ttl = ttl
        self._secret = secrets.token_bytes(32)
        self._expiries: OrderedDict[bytes, float] = OrderedDict()

    def key(self, user: str, password: bytes) -> bytes:
        """The key of C{user} with C{password}."""
        name = user.encode("utf-8")
        message = len(name).to_bytes(4, "big") + name + password
        return hmac.new(self._secret, message, sha256).digest()

    def __contains__(self, key: bytes) -> bool:
        expiry = self._expiries.get(key)
        if expiry is None:
            return False
        if expiry <= self._clock.seconds():
            del self._expiries[key]
            return False
        self._expiries.move_to_end(key)
        return True

    def add(self, key: bytes) -> None:
        """Remember C{key}, forgetting the least recently used beyond the size."""
        self._expiries[key] = self._clock.seconds() + self._ttl
        self._expiries.move_to_end(key)
        while len(self._expiries) > self._size:
            self._expiries.popitem(last=False)

    def clear(self) -> None:
        """Forget everything."""
        self._expiries.clear()


class PeerQueueFull(Exception):
    """A client already has as many calls waiting or running as it may."""


class ThreadRunner(ThreadPool):
    """
    A L{Runner} over a thread pool of its own, so that slow calls never
    hold up the storage pool of L{txregistry.threads} (nor the other way
    round).  Its threads start on first use.
    """

    def __call__(self, call: Callable[[], T]) -> Deferred[T]:
        """Run C{call} in the pool; a Deferred firing with its outcome on the reactor thread."""
        return self.run(call)


@dataclass
class _Call(Generic[T]):
    peer: str
    call: Callable[[], T]
    result: Deferred[T] = field(default_factory=Deferred)


class FairPool:
    """
    Runs calls through a L{Runner}, at most C{slots} at once, taking them
    round-robin among clients.  Used on the reactor thread only.

    Round-robin by rounds (start-time fair queueing, each call costing
    one): a client's call is due one round after its previous call, and
    never before the round being served; the earliest due runs first, the
    first come among equals.  So a client arriving while another has fifty
    calls queued is due in the current round: its call runs next.

    @ivar slots: the most calls running at once.
    @ivar per_peer: the most calls one client may have waiting or running.
    """

    def __init__(self, slots: int, per_peer: int, run: Runner) -> None:
        self.slots = slots
        self.per_peer = per_peer
        self._run = run
        self._running = 0
        # Waiting calls by (due round, arrival); the round of the last started.
        self._waiting: list[tuple[int, int, _Call[Any]]] = []
        self._arrivals = itertools.count()
        self._round = 0
        # Each client's calls waiting or running, and the round after its last.
        self._pending: dict[str, int] = {}
        self._next_round: dict[str, int] = {}

    def pending(self, peer: str) -> int:
        """How many calls C{peer} has waiting or running."""
        return self._pending.get(peer, 0)

    def submit(self, peer: str, call: Callable[[], T]) -> Deferred[T]:
        """
        Queue C{call} for C{peer}.

        @return: a Deferred firing with the call's result, or failing with
            what it raised.
        @raise PeerQueueFull: at once, when C{peer} already has
            C{per_peer} calls waiting or running.
        """
        if self.pending(peer) >= self.per_peer:
            raise PeerQueueFull(peer)
        queued: _Call[T] = _Call(peer, call)
        self._pending[peer] = self.pending(peer) + 1
        due = max(self._round, self._next_round.get(peer, 0))
        self._next_round[peer] = due + 1
        heapq.heappush(self._waiting, (due, next(self._arrivals), queued))
        self._start()
        return queued.result

    def _start(self) -> None:
        while self._running < self.slots and self._waiting:
            self._round, _, queued = heapq.heappop(self._waiting)
            self._running += 1
            self._run(queued.call).addBoth(self._finished, queued)

    def _finished(self, outcome: Any, queued: _Call[Any]) -> None:
        self._running -= 1
        left = self._pending[queued.peer] - 1
        if left:
            self._pending[queued.peer] = left
        else:
            del self._pending[queued.peer]
            del self._next_round[queued.peer]
        # The next call starts before this one's waiters run, so that what
        # they do (submitting again, say) queues behind it fairly.
        self._start()
        if isinstance(outcome, Failure):
            queued.result.errback(outcome)
        else:
            queued.result.callback(outcome)
