# -*- test-case-name: tests.test_cache -*-
"""
The C{redis} cache: one Redis shared by every process (workers, and
registries behind a load balancer), through txredisapi, never blocking
the reactor.

Keys are Distribution's, so that txregistry and C{docker-registry} can share
one Redis (and one storage) while an operator migrates:

 - C{blobs::<digest>}, a hash with C{digest}, C{size} and C{mediatype}: a
   blob's descriptor, whatever repository holds it;
 - C{repository::<name>::blobs}, a set of digests: the blobs linked into
   the repository;
 - C{repository::<name>::blobs::<digest>}, a hash with C{mediatype}: the
   repository's own media type for the blob.

A blob is known in a repository when it is in the repository's set and
its descriptor has a digest and a size, as for Distribution; forgetting it
removes it from the set and removes the descriptor's fields, as
Distribution's C{Clear} does (every repository then looks it up again).

Distribution caches no manifest revisions, and its manifest deletes touch
no Redis key, so txregistry keeps revisions under keys of its own,
C{txregistry::repository::<name>::revisions::<digest>} (the size), that
expire after L{REVISION_TTL} seconds: a delete through txregistry forgets
one at once, and one made through C{docker-registry} is seen within that.

When Redis cannot be reached, or does not answer within C{readtimeout},
lookups answer "unknown" (the registry asks storage) and nothing is
written; one line is logged.  What was forgotten meanwhile may not have
reached Redis, and the entries other processes see could then undo a
delete; so once Redis answers again, every cache key is dropped (Distribution's
and txregistry's, by C{SCAN}) before the cache is trusted again, and one
line is logged.  (A delete made while only this process could not reach
Redis stays visible through the others until it reaches it again.)

Each process also keeps what Redis answered in memory (the near cache), for
L{NEAR_TTL} seconds at most: a lookup in memory costs a tenth of a round
trip to Redis, and every pull makes several.  A process trusts those
entries only while it knows the cache's generation (the key
C{txregistry::generation}, read every L{POLL} seconds) to within
L{FORGET_WAIT} seconds; a forget deletes the keys, bumps the generation, and
then waits L{FORGET_WAIT} seconds before it fires (a delete answers that
much later): by then, every process that still answers from memory has read
the new generation and emptied its near cache.  What C{docker-registry}
deletes bumps no generation: txregistry sees it within L{NEAR_TTL}.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import txredisapi
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    FirstError,
    ensureDeferred,
    gatherResults,
    succeed,
)
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from zope.interface import implementer

from txregistry.cache import LAYER, REVISION
from txregistry.config.redis import RedisConfig
from txregistry.digest import Digest
from txregistry.interfaces import ICache

_log = Logger()

# How long a manifest revision is trusted (see the module's docstring).
REVISION_TTL = 5
# The near cache (see the module's docstring): how long an entry is answered
# from memory, how often the generation is read, and how long a forget
# waits (the longest a generation read may be old for memory to be trusted).
NEAR_TTL = 1.0
POLL = 0.05
FORGET_WAIT = 0.2
GENERATION_KEY = "txregistry::generation"
# The media type Distribution gives a blob's descriptor.
BLOB_MEDIA_TYPE = "application/octet-stream"
# The patterns of every key the cache writes (dropped after an outage).
KEY_PATTERNS = ("blobs::*", "repository::*", "txregistry::*")
# A blob's lookup, in one round trip: its size when it is in the
# repository's set and its descriptor has a digest (Distribution's Stat).
LAYER_LOOKUP = (
    "if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then "
    "local found = redis.call('HMGET', KEYS[2], 'digest', 'size') "
    "if found[1] then return found[2] end "
    "end "
    "return false"
)
# How many keys one SCAN asks for, and one DEL removes.
SCAN_COUNT = 1000
# The first and the longest pause between two checks of whether Redis is
# back, and between two attempts to connect.
FIRST_CHECK = 0.2
LONGEST_CHECK = 2.0


def blob_key(digest: Digest) -> str:
    """A blob's descriptor hash."""
    return f"blobs::{digest}"


def repository_blobs_key(repository: str) -> str:
    """The set of a repository's blobs."""
    return f"repository::{repository}::blobs"


def repository_blob_key(repository: str, digest: Digest) -> str:
    """A repository's own hash of a blob (its media type)."""
    return f"repository::{repository}::blobs::{digest}"


def revision_key(repository: str, digest: Digest) -> str:
    """A manifest revision's size (txregistry's own key)."""
    return f"txregistry::repository::{repository}::revisions::{digest}"


def connect(config: RedisConfig) -> Any:
    """A txredisapi connection pool to the configured Redis (connected lazily)."""
    pool = txredisapi.lazyConnectionPool(
        host=config.host,
        port=config.port,
        dbid=config.db,
        # Commands are pipelined over one connection: txredisapi sends every
        # command that does not block on the first connection of its pool.
        poolsize=1,
        password=config.password,
        username=config.username,
        ssl_context_factory=_tls_options(config) if config.tls.enabled else False,
        connectTimeout=config.dial_timeout,
        # No timer a command: RedisCache's watchdog bounds the wait for
        # replies (a timer each cost a third of a lookup).
        replyTimeout=None,
        convertNumbers=False,
    )
    # Reconnect sooner than txredisapi would (1 s, then e times longer, up
    # to 10 s): the cache is worth more than the attempts cost.
    factory = pool._factory
    factory.initialDelay = FIRST_CHECK
    factory.factor = 2.0
    factory.maxDelay = LONGEST_CHECK
    return pool


def _tls_options(config: RedisConfig) -> Any:
    """The TLS client options of C{redis.tls}."""
    from twisted.internet import ssl

    trust: Any = None
    if config.tls.client_cas:
        authorities = []
        for path in config.tls.client_cas:
            with open(path, "rb") as pem:
                authorities.append(ssl.Certificate.loadPEM(pem.read()))
        trust = ssl.trustRootFromCertificates(authorities)
    client: Any = None
    if config.tls.certificate is not None and config.tls.key is not None:
        with open(config.tls.certificate, "rb") as certificate, open(config.tls.key, "rb") as key:
            client = ssl.PrivateCertificate.loadPEM(certificate.read() + b"\n" + key.read())
    return ssl.optionsForClientTLS(config.host, trustRoot=trust, clientCertificate=client)


@implementer(ICache)
class RedisCache:
    """
    The cache in Redis (see the module's docstring).

    @ivar hits: lookups answered from Redis, or from memory.
    @ivar near_hits: those answered from memory.
    @ivar misses: lookups Redis did not know, or could not answer.
    @ivar failures: commands that failed or timed out.
    @ivar outages: how many times Redis was lost.
    """

    def __init__(
        self,
        config: RedisConfig,
        reactor: Any = None,
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
        near_size: int = 10000,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.config = config
        self._reactor = reactor
        self._clock = clock
        self._client = connect(config) if client is None else client
        self.hits = 0
        self.near_hits = 0
        self.misses = 0
        self.failures = 0
        self.outages = 0
        # Whether answers from Redis are trusted; not before the first
        # connection, nor after a failure until every key is dropped.
        self._trusted = False
        # Whether a failure was seen: the keys must be dropped before trust.
        self._dirty = False
        self._down_since: float | None = None
        self._closed = False
        self._checking: Deferred[None] | None = None
        # Commands sent and not answered yet, and when the last reply came
        # (or the first of them went): see _watch.
        self._waiting = 0
        self._progress = clock()
        self._watchdog = LoopingCall(self._watch)
        self._watchdog.clock = reactor
        self._watchdog.start(self._watch_interval(), now=False)
        # The near cache: (repository, kind, digest) to (read at, size); the
        # generation last read, and when the last read that answered was sent.
        self._near: OrderedDict[tuple[str, str, Digest], tuple[float, int]] = OrderedDict()
        self._near_size = near_size
        self._generation: Any = None
        self._polled_at = float("-inf")
        self._poller = LoopingCall(self._poll)
        self._poller.clock = reactor
        self._poller.start(POLL, now=False)
        self._check_soon()

    @property
    def trusted(self) -> bool:
        """Whether lookups are answered from Redis now (else they go to storage)."""
        return self._trusted

    # -- the near cache ----------------------------------------------------------

    def _poll(self) -> None:
        """Read the generation; a new one empties the near cache."""
        connection = self._connection() if self._trusted else None
        if connection is None:
            return
        sent_at = self._clock()
        try:
            reading = self._sent(connection.execute_command("GET", GENERATION_KEY))
        except Exception as error:
            self._failed(error)
            return
        reading.addCallbacks(self._polled, self._failed, callbackArgs=(sent_at,))

    def _polled(self, generation: Any, sent_at: float) -> None:
        if generation != self._generation:
            self._near.clear()
            self._generation = generation
        self._polled_at = max(self._polled_at, sent_at)

    def _near_trusted(self, now: float) -> bool:
        return self._trusted and now - self._polled_at < FORGET_WAIT

    def _remember(self, key: tuple[str, str, Digest], read_at: float, size: int) -> None:
        self._near[key] = (read_at, size)
        self._near.move_to_end(key)
        while len(self._near) > self._near_size:
            self._near.popitem(last=False)

    async def _bump(self, connection: Any) -> None:
        """
        A new generation, never seen before (not a counter: one lost with
        Redis's data could come back): every process empties its near cache.
        """
        self._near.clear()
        await self._sent(connection.execute_command("SET", GENERATION_KEY, secrets.token_hex(8)))

    def _watch_interval(self) -> float:
        return max(min(self.config.read_timeout, self.config.write_timeout) / 4, 0.005)

    def _watch(self) -> None:
        """
        Drop the connection when replies are awaited and none came for
        longer than the timeouts: every command waiting fails (a lookup then
        answers unknown), and the cache is distrusted.
        """
        if self._waiting and self._clock() - self._progress > max(
            self.config.read_timeout, self.config.write_timeout
        ):
            connection = self._connection()
            self._waiting = 0
            self._failed(TimeoutError("Redis did not answer in time"))
            if connection is not None:
                connection.transport.abortConnection()

    def _sent(self, sent: Deferred[Any]) -> Deferred[Any]:
        """Count C{sent} among the commands awaited until it is answered."""
        if not self._waiting:
            self._progress = self._clock()
        self._waiting += 1
        return sent.addBoth(self._answered)

    def _answered(self, result: object) -> object:
        if self._waiting:
            self._waiting -= 1
        self._progress = self._clock()
        return result

    # -- connection --------------------------------------------------------------

    def _connection(self) -> Any:
        """The connection commands go over, or L{None} while there is none."""
        for connection in self._client._factory.pool:
            if connection.connected:
                return connection
        return None

    def _failed(self, reason: object) -> None:
        """A command failed: distrust the cache until Redis answers and is emptied."""
        reason = getattr(reason, "value", reason)  # a Failure's exception
        if isinstance(reason, FirstError):
            reason = reason.subFailure.value
        self.failures += 1
        self._down(reason)
        self._check_soon()

    def _down(self, reason: object) -> None:
        """Distrust the cache; the first time since it was trusted, count and say it."""
        self._near.clear()
        self._trusted = False
        self._dirty = True
        if self._down_since is None:
            self._down_since = self._clock()
            self.outages += 1
            _log.error(
                "the Redis cache at {addr} cannot be used ({reason}); lookups go to "
                "storage until it answers again",
                addr=self.config.addr,
                reason=reason,
            )

    def _check_soon(self) -> None:
        if self._checking is None and not self._closed:
            checking = ensureDeferred(self._until_trusted())
            checking.addErrback(self._check_crashed)
            if not checking.called:  # else it is over already
                self._checking = checking

    def _check_crashed(self, failure: Any) -> None:
        self._checking = None
        if not self._closed:
            _log.failure("the Redis cache's check stopped", failure)

    async def _until_trusted(self) -> None:
        """Check, with back-off, until Redis answers; empty it if need be; trust it."""
        pause = FIRST_CHECK
        while not self._closed:
            connection = self._connection()
            if connection is not None:
                try:
                    await self._sent(connection.execute_command("PING"))
                    if self._dirty:
                        await self._drop_keys(connection)
                        await self._bump(connection)
                except CancelledError:
                    raise  # closed
                except Exception as error:
                    self.failures += 1
                    self._down(error)
                else:
                    self._trusted = True
                    if self._dirty:
                        self._dirty = False
                        down = self._clock() - (self._down_since or self._clock())
                        _log.info(
                            "the Redis cache at {addr} answers again after {seconds:.1f} s; "
                            "its entries were dropped (deletes meanwhile may not have "
                            "reached it)",
                            addr=self.config.addr,
                            seconds=down,
                        )
                    self._down_since = None
                    self._checking = None
                    return
            elif pause >= self.config.dial_timeout:
                self._down("no connection within the dial timeout")
            if self._closed:
                break
            await deferLater(self._reactor, pause, lambda: None)
            pause = min(pause * 2, LONGEST_CHECK)
        self._checking = None

    async def _drop_keys(self, connection: Any) -> None:
        """Delete every key of the cache (see the module's docstring)."""
        for pattern in KEY_PATTERNS:
            cursor = "0"
            while True:
                cursor, keys = await self._sent(
                    connection.execute_command(
                        "SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT
                    )
                )
                keys = [key for key in keys if key != GENERATION_KEY]
                if keys:
                    await self._sent(connection.execute_command("DEL", *keys))
                if str(cursor) == "0":
                    break

    def _send(
        self, *commands: tuple[Any, ...], trusted_only: bool = True
    ) -> Deferred[list[Any]] | None:
        """
        Send C{commands} one after another (pipelined); L{None} when the
        cache is not trusted (unless not C{trusted_only}) or not connected
        (a failure then).
        """
        if trusted_only and not self._trusted:
            return None
        connection = self._connection()
        if connection is None:
            self._failed("not connected")
            return None
        try:
            sent = [self._sent(connection.execute_command(*command)) for command in commands]
        except Exception as error:
            self._failed(error)
            return None
        return gatherResults(sent, consumeErrors=True)

    # -- ICache ------------------------------------------------------------------

    def get(self, repository: str, kind: str, digest: Digest) -> Deferred[int | None]:
        """
        See L{ICache.get}: from memory when trusted (see the module's
        docstring), else one command, one round trip.
        """
        key = (repository, kind, digest)
        now = self._clock()
        if self._near_trusted(now):
            near = self._near.get(key)
            if near is not None and now - near[0] < NEAR_TTL:
                self.hits += 1
                self.near_hits += 1
                return succeed(near[1])
        if kind == REVISION:
            command: tuple[Any, ...] = ("GET", revision_key(repository, digest))
        elif kind == LAYER:
            command = (
                "EVAL",
                LAYER_LOOKUP,
                2,
                repository_blobs_key(repository),
                blob_key(digest),
                str(digest),
            )
        else:
            raise ValueError(f"unknown kind {kind!r}")
        connection = self._connection() if self._trusted else None
        if connection is None:
            if self._trusted:
                self._failed("not connected")
            self.misses += 1
            return succeed(None)
        try:
            sent = connection.execute_command(*command)
        except Exception as error:
            self._failed(error)
            self.misses += 1
            return succeed(None)
        return self._sent(sent).addCallbacks(
            self._size_of, self._lookup_failed, callbackArgs=(key, now, self._generation)
        )

    def _size_of(
        self, size: Any, key: tuple[str, str, Digest], sent_at: float, generation: Any
    ) -> int | None:
        if size is None:
            self.misses += 1
            return None
        try:
            found = int(size)
        except ValueError:
            self.misses += 1
            return None  # not ours to trust
        self.hits += 1
        if generation == self._generation and self._trusted:
            # Not when a forget came between: the answer may predate it.
            self._remember(key, sent_at, found)
        return found

    def _lookup_failed(self, failure: Any) -> None:
        self.misses += 1
        self._failed(failure.value)
        return None

    def set(self, repository: str, kind: str, digest: Digest, size: int) -> Deferred[None]:
        """See L{ICache.set}."""
        if kind == LAYER:
            sent = self._send(
                ("SADD", repository_blobs_key(repository), str(digest)),
                ("HSET", blob_key(digest), "digest", str(digest), "size", size),
                ("HSETNX", blob_key(digest), "mediatype", BLOB_MEDIA_TYPE),
                ("HSET", repository_blob_key(repository, digest), "mediatype", BLOB_MEDIA_TYPE),
            )
        elif kind == REVISION:
            sent = self._send(("SET", revision_key(repository, digest), size, "EX", REVISION_TTL))
        else:
            raise ValueError(f"unknown kind {kind!r}")
        if sent is None:
            return succeed(None)
        return sent.addCallbacks(lambda _: None, self._failed)

    def forget(self, repository: str, kind: str, digest: Digest) -> Deferred[None]:
        """
        See L{ICache.forget}.  When Redis cannot take it, the cache is
        distrusted and emptied once Redis answers again.
        """
        if kind == LAYER:
            commands: tuple[tuple[Any, ...], ...] = (
                ("SREM", repository_blobs_key(repository), str(digest)),
                ("HDEL", blob_key(digest), "digest", "size", "length", "mediatype"),
                ("DEL", repository_blob_key(repository, digest)),
            )
        elif kind == REVISION:
            commands = (("DEL", revision_key(repository, digest)),)
        else:
            raise ValueError(f"unknown kind {kind!r}")
        self._near.pop((repository, kind, digest), None)
        # Sent whenever there is a connection, trusted or not: another
        # process (or docker-registry) may trust what this one does not.
        bump = ("SET", GENERATION_KEY, secrets.token_hex(8))
        sent = self._send(*commands, bump, trusted_only=False)
        if sent is None:
            self._dirty = True  # not sent: the keys must go before trust
            return succeed(None)
        return sent.addCallbacks(self._forgotten, self._failed)

    def _forgotten(self, _: object) -> Deferred[None]:
        """Wait until no process answers from memory what it read before."""
        return deferLater(self._reactor, FORGET_WAIT, lambda: None)

    def clear(self) -> Deferred[bool]:
        """
        See L{ICache.clear}: drops every cache key (waiting for a first
        connection up to C{dialtimeout}).  When Redis cannot be emptied,
        this process distrusts it until it can.
        """
        return ensureDeferred(self._clear())

    async def _clear(self) -> bool:
        deadline = self._clock() + self.config.dial_timeout + self.config.read_timeout
        while (connection := self._connection()) is None and self._clock() < deadline:
            await deferLater(self._reactor, 0.05, lambda: None)
        if connection is None:
            self._failed("not connected")
            return False
        try:
            await self._drop_keys(connection)
            await self._bump(connection)
        except Exception as error:
            self._failed(error)
            return False
        await deferLater(self._reactor, FORGET_WAIT, lambda: None)
        return True

    def close(self) -> Deferred[None]:
        """See L{ICache.close}."""
        self._closed = True
        for looping in (self._watchdog, self._poller):
            if looping.running:
                looping.stop()
        if self._checking is not None:
            self._checking.cancel()
            self._checking = None
        disconnected: Deferred[None] = self._client.disconnect()
        return disconnected


class RedisCacheFactory:
    """Makes the C{redis} cache from the C{redis} section."""

    name = "redis"

    def create(self, config: Any) -> ICache:
        """See L{txregistry.interfaces.ICacheFactory.create}."""
        from txregistry.config.core import ConfigError

        if config.redis is None:
            raise ConfigError("redis.addr", "required by storage.cache.blobdescriptor: redis")
        return RedisCache(config.redis, near_size=config.storage.blob_descriptor_cache_size)
