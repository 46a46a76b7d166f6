"""
The blob descriptor caches (L{txregistry.interfaces.ICache}): one suite
every cache passes (L{CacheContract}; a new cache adds one class), then what
is particular to each: the in-memory one's bound and expiry, and Redis's
keys (Distribution's), outages and recovery, with a real C{redis-server}.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from support import temporary_directory, wait_until
from txregistry.cache import LAYER, REVISION
from txregistry.cache import redis as redis_module
from txregistry.cache.inmemory import InMemoryCache, NoCache
from txregistry.cache.plugins import cache_factories
from txregistry.cache.redis import RedisCache, RedisCacheFactory
from txregistry.config import ConfigError, load_config
from txregistry.config.redis import RedisConfig
from txregistry.digest import Digest
from txregistry.drivers.inmemory import InMemoryDriver
from txregistry.drivers.plugins import driver_factories
from txregistry.interfaces import ICache, ICacheFactory
from txregistry.registry.repository import Registry
from txregistry.testing.redisserver import RedisServerProcess

ONE = Digest.of(b"one")
TWO = Digest.of(b"two")
GIB = 1 << 30


class CacheContract:
    """What every cache does; a subclass makes the cache (L{make_cache})."""

    cache: ICache

    def make_cache(self) -> ICache:
        raise NotImplementedError

    async def ready(self) -> None:
        """Wait until the cache answers (a remote one connects)."""

    async def test_interface(self) -> None:
        self.cache = self.make_cache()
        verifyObject(ICache, self.cache)

    async def test_unknown(self) -> None:
        """Nothing is known at first."""
        await self.ready()
        self.assertIsNone(await self.cache.get("a", LAYER, ONE))  # type: ignore[attr-defined]
        self.assertIsNone(await self.cache.get("a", REVISION, ONE))  # type: ignore[attr-defined]

    async def test_remembers_per_repository_and_kind(self) -> None:
        await self.ready()
        await self.cache.set("a/b", LAYER, ONE, 3)
        await self.cache.set("a/b", REVISION, TWO, 4 * GIB)
        check: Any = self
        check.assertEqual(await self.cache.get("a/b", LAYER, ONE), 3)
        check.assertEqual(await self.cache.get("a/b", REVISION, TWO), 4 * GIB)
        check.assertIsNone(await self.cache.get("c", LAYER, ONE))
        check.assertIsNone(await self.cache.get("a/b", REVISION, ONE))
        check.assertIsNone(await self.cache.get("a/b", LAYER, TWO))

    async def test_forget(self) -> None:
        """A forgotten entry is unknown; forgetting an unknown one does nothing."""
        await self.ready()
        check: Any = self
        await self.cache.set("a", LAYER, ONE, 1)
        await self.cache.set("a", REVISION, ONE, 2)
        await self.cache.forget("a", LAYER, ONE)
        await self.cache.forget("a", LAYER, TWO)
        await self.cache.forget("never", REVISION, TWO)
        check.assertIsNone(await self.cache.get("a", LAYER, ONE))
        check.assertEqual(await self.cache.get("a", REVISION, ONE), 2)
        await self.cache.forget("a", REVISION, ONE)
        check.assertIsNone(await self.cache.get("a", REVISION, ONE))

    async def test_forget_in_one_repository(self) -> None:
        """
        Forgetting a blob in one repository forgets it there; another
        repository may then ask storage again, but never gets a wrong size.
        """
        await self.ready()
        check: Any = self
        await self.cache.set("a", LAYER, ONE, 1)
        await self.cache.set("b", LAYER, ONE, 1)
        await self.cache.forget("a", LAYER, ONE)
        check.assertIsNone(await self.cache.get("a", LAYER, ONE))
        check.assertIn(await self.cache.get("b", LAYER, ONE), (None, 1))
        await self.cache.set("b", LAYER, ONE, 1)
        check.assertEqual(await self.cache.get("b", LAYER, ONE), 1)
        check.assertIsNone(await self.cache.get("a", LAYER, ONE))

    async def test_clear(self) -> None:
        """Clearing forgets every entry, and says it could."""
        await self.ready()
        check: Any = self
        await self.cache.set("a", LAYER, ONE, 1)
        await self.cache.set("b", REVISION, TWO, 2)
        check.assertTrue(await self.cache.clear())
        check.assertIsNone(await self.cache.get("a", LAYER, ONE))
        check.assertIsNone(await self.cache.get("b", REVISION, TWO))

    async def test_set_again(self) -> None:
        """The last size set is the one known."""
        await self.ready()
        await self.cache.set("a", REVISION, ONE, 1)
        await self.cache.set("a", REVISION, ONE, 5)
        self.assertEqual(await self.cache.get("a", REVISION, ONE), 5)  # type: ignore[attr-defined]


class InMemoryCacheTests(CacheContract, TestCase):
    def make_cache(self) -> ICache:
        return InMemoryCache()

    def setUp(self) -> None:
        self.cache = self.make_cache()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class InMemoryTests(SynchronousTestCase):
    """The in-memory cache's bound and expiry; no cache at all."""

    def get(self, cache: ICache, *key: Any) -> Any:
        return self.successResultOf(cache.get(*key))

    def test_entries_expire(self) -> None:
        clock = Clock()
        cache = InMemoryCache(ttl=5.0, clock=clock)
        cache.set("a", LAYER, ONE, 3)
        clock.now += 5.0
        self.assertEqual(self.get(cache, "a", LAYER, ONE), 3)
        clock.now += 0.1
        self.assertIsNone(self.get(cache, "a", LAYER, ONE))

    def test_expired_entries_dropped_as_new_ones_come(self) -> None:
        """The cache does not keep up to its size of expired entries."""
        clock = Clock()
        cache = InMemoryCache(size=1000, ttl=5.0, clock=clock)
        for index in range(100):
            cache.set("a", LAYER, Digest.of(b"%d" % index), index)
        clock.now += 5.1
        cache.set("a", LAYER, ONE, 1)
        self.assertEqual(len(cache), 1)
        self.assertEqual(self.get(cache, "a", LAYER, ONE), 1)

    def test_used_entry_outlives_older_expired_ones(self) -> None:
        """Dropping stops at the first entry still trusted."""
        clock = Clock()
        cache = InMemoryCache(ttl=5.0, clock=clock)
        cache.set("a", LAYER, ONE, 1)
        clock.now += 3.0
        cache.set("a", LAYER, TWO, 2)
        clock.now += 2.5
        cache.set("a", REVISION, ONE, 3)
        self.assertEqual(len(cache), 2)
        self.assertEqual(self.get(cache, "a", LAYER, TWO), 2)

    def test_least_recently_used_dropped(self) -> None:
        cache = InMemoryCache(size=2)
        cache.set("a", LAYER, ONE, 1)
        cache.set("a", LAYER, TWO, 2)
        self.assertEqual(self.get(cache, "a", LAYER, ONE), 1)  # now the most recent
        cache.set("a", REVISION, ONE, 3)
        self.assertIsNone(self.get(cache, "a", LAYER, TWO))
        self.assertEqual(self.get(cache, "a", LAYER, ONE), 1)
        self.assertEqual(self.get(cache, "a", REVISION, ONE), 3)

    def test_no_cache_remembers_nothing(self) -> None:
        cache = NoCache()
        verifyObject(ICache, cache)
        cache.set("a", LAYER, ONE, 1)
        self.assertIsNone(self.get(cache, "a", LAYER, ONE))
        self.successResultOf(cache.forget("a", LAYER, ONE))
        self.successResultOf(cache.close())

    def test_plugins(self) -> None:
        """Both caches are plugins; the in-memory one has the configured size."""
        factories = cache_factories()
        self.assertLessEqual({"inmemory", "redis"}, set(factories))
        for factory in factories.values():
            verifyObject(ICacheFactory, factory)
        config = load_config(
            "version: 0.1\nstorage:\n  inmemory: {}\n"
            "  cache: {blobdescriptor: inmemory, blobdescriptorsize: 1}\n",
            environ={},
            known_drivers=driver_factories(),
        )
        cache = factories["inmemory"].create(config)
        cache.set("a", LAYER, ONE, 1)
        cache.set("a", LAYER, TWO, 2)
        self.assertIsNone(self.get(cache, "a", LAYER, ONE))

    def test_config(self) -> None:
        """The embedded default has the cache, as Distribution's sample config; its size is read."""
        default = load_config(None, environ={}, known_drivers=driver_factories())
        self.assertEqual(default.storage.blob_descriptor_cache, "inmemory")
        sized = load_config(
            "version: 0.1\nstorage:\n  inmemory: {}\n  cache: {blobdescriptorsize: 7}\n",
            environ={},
            known_drivers=driver_factories(),
        )
        self.assertIsNone(sized.storage.blob_descriptor_cache)
        self.assertEqual(sized.storage.blob_descriptor_cache_size, 7)

    def test_registry_keeps_an_empty_cache(self) -> None:
        """
        A registry given an empty in-memory cache uses it: the cache has a
        length, so an empty one is falsy, and a registry that took it for
        "no cache" answered every manifest lookup from storage.
        """
        cache = InMemoryCache()
        registry = Registry(InMemoryDriver(), descriptor_cache=cache)
        self.assertIs(registry.descriptor_cache, cache)
        self.assertIs(registry.repository("a").manifests.cache, cache)
        self.assertIsInstance(Registry(InMemoryDriver()).descriptor_cache, NoCache)

    def test_redis_factory_needs_the_section(self) -> None:
        """Made without a redis section, the Redis cache names the key missing."""

        class Bare:
            redis = None

        error = self.assertRaises(ConfigError, RedisCacheFactory().create, Bare())
        self.assertEqual(error.key, "redis.addr")


class RedisFixture:
    """A redis-server of the test's own, and caches on it (closed after the test)."""

    read_timeout = 0.2

    def start_redis(self) -> RedisServerProcess:
        case: Any = self
        self.redis = RedisServerProcess(Path(temporary_directory(case)))
        self.redis.start()
        case.addCleanup(self.redis.stop)
        return self.redis

    def redis_config(self, **overrides: Any) -> RedisConfig:
        options: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.redis.port,
            "read_timeout": self.read_timeout,
            "write_timeout": self.read_timeout,
            "dial_timeout": 0.5,
        }
        options.update(overrides)
        return RedisConfig(**options)

    def redis_cache(self, **overrides: Any) -> RedisCache:
        cache = RedisCache(self.redis_config(**overrides))
        case: Any = self
        case.addCleanup(cache.close)
        return cache


class RedisCacheTests(RedisFixture, CacheContract, TestCase):
    def setUp(self) -> None:
        self.start_redis()
        self.cache = self.make_cache()

    def make_cache(self) -> ICache:
        return self.redis_cache()

    async def ready(self) -> None:
        cache = self.cache
        assert isinstance(cache, RedisCache)
        await wait_until(lambda: cache._trusted)


class RedisTests(RedisFixture, TestCase):
    """Redis's keys are Distribution's; outages and recovery."""

    def setUp(self) -> None:
        self.start_redis()
        self.logged: list[dict[str, Any]] = []
        self.patch(redis_module, "_log", Logger(observer=self.logged.append))

    async def connected(self, **overrides: Any) -> RedisCache:
        cache = self.redis_cache(**overrides)
        await wait_until(lambda: cache._trusted)
        return cache

    def messages(self) -> list[str]:
        return [entry["log_format"] for entry in self.logged]

    async def test_distribution_keys(self) -> None:
        """A blob is stored under Distribution's keys; a revision under txregistry's, expiring."""
        cache = await self.connected()
        await cache.set("library/app", LAYER, ONE, 42)
        await cache.set("library/app", REVISION, TWO, 7)
        redis = self.redis
        self.assertEqual(redis.command("SISMEMBER", "repository::library/app::blobs", str(ONE)), 1)
        self.assertEqual(
            redis.command("HMGET", f"blobs::{ONE}", "digest", "size", "mediatype"),
            [str(ONE).encode(), b"42", b"application/octet-stream"],
        )
        self.assertEqual(
            redis.command("HGET", f"repository::library/app::blobs::{ONE}", "mediatype"),
            b"application/octet-stream",
        )
        key = f"txregistry::repository::library/app::revisions::{TWO}"
        self.assertEqual(redis.command("GET", key), b"7")
        self.assertTrue(0 < redis.command("TTL", key) <= redis_module.REVISION_TTL)

    async def test_reads_distribution_entries(self) -> None:
        """
        What C{docker-registry} wrote is known; once it clears a blob (it
        removes the descriptor's fields, not the set's member), it is not.
        """
        cache = await self.connected()
        redis = self.redis
        redis.command("SADD", "repository::app::blobs", str(ONE))
        redis.command("HSET", f"blobs::{ONE}", "digest", str(ONE), "size", "9")
        redis.command("HSETNX", f"blobs::{ONE}", "mediatype", "application/octet-stream")
        self.assertEqual(await cache.get("app", LAYER, ONE), 9)
        self.assertIsNone(await cache.get("other", LAYER, ONE))  # not a member there
        redis.command("HDEL", f"blobs::{ONE}", "digest", "length", "mediatype")
        self.assertIsNone(await cache.get("app", LAYER, ONE))
        # A size that is no number is not trusted.
        redis.command("SET", f"txregistry::repository::app::revisions::{TWO}", "junk")
        self.assertIsNone(await cache.get("app", REVISION, TWO))

    async def test_forget_as_distribution(self) -> None:
        """Forgetting a blob leaves what Distribution's Stat reads as unknown."""
        cache = await self.connected()
        await cache.set("app", LAYER, ONE, 3)
        await cache.forget("app", LAYER, ONE)
        redis = self.redis
        self.assertEqual(redis.command("SISMEMBER", "repository::app::blobs", str(ONE)), 0)
        self.assertEqual(redis.command("HMGET", f"blobs::{ONE}", "digest", "size"), [None, None])

    async def test_forget_sent_while_distrusted(self) -> None:
        """
        A forget goes to Redis whenever connected, even while this cache
        does not trust what it reads there (at start-up, or recovering):
        others may.
        """
        cache = await self.connected()
        await cache.set("app", LAYER, ONE, 3)
        cache._trusted = False
        await cache.forget("app", LAYER, ONE)
        self.assertEqual(self.redis.command("SISMEMBER", "repository::app::blobs", str(ONE)), 0)
        self.assertFalse(cache._dirty)

    async def test_shared(self) -> None:
        """
        Two processes' caches on one Redis: a forget through one is seen by
        the other once it fires, though the other answered from memory.
        """
        first = await self.connected()
        second = await self.connected()
        await first.set("app", REVISION, ONE, 5)
        await first.set("app", LAYER, TWO, 6)
        for cache in (first, second):
            self.assertEqual(await cache.get("app", REVISION, ONE), 5)
            self.assertEqual(await cache.get("app", LAYER, TWO), 6)
        await wait_until(lambda: first._near_trusted(time.monotonic()))
        self.assertEqual(await first.get("app", REVISION, ONE), 5)
        self.assertEqual(first.near_hits, 1)
        started = time.monotonic()
        await second.forget("app", REVISION, ONE)
        await second.forget("app", LAYER, TWO)
        self.assertGreaterEqual(time.monotonic() - started, 2 * redis_module.FORGET_WAIT)
        self.assertIsNone(await first.get("app", REVISION, ONE))
        self.assertIsNone(await first.get("app", LAYER, TWO))

    async def test_near_cache(self) -> None:
        """
        What Redis answered is answered from memory while the generation is
        fresh, for NEAR_TTL at most; an entry Redis lost (deleted by
        docker-registry, which bumps no generation) is seen within it.
        """
        self.patch(redis_module, "NEAR_TTL", 0.3)
        cache = await self.connected()
        await cache.set("app", LAYER, ONE, 3)
        self.assertEqual(await cache.get("app", LAYER, ONE), 3)  # from Redis
        await wait_until(lambda: cache._near_trusted(time.monotonic()))
        self.assertEqual(await cache.get("app", LAYER, ONE), 3)
        self.assertEqual(cache.near_hits, 1)
        self.redis.command("HDEL", f"blobs::{ONE}", "digest", "length", "mediatype")
        await deferLater(reactor, 0.35, lambda: None)
        self.assertIsNone(await cache.get("app", LAYER, ONE))

    async def test_near_not_trusted_without_generation(self) -> None:
        """Memory is not answered from once the generation could not be read for a while."""
        cache = await self.connected()
        await cache.set("app", REVISION, ONE, 3)
        self.assertEqual(await cache.get("app", REVISION, ONE), 3)
        self.redis.pause()
        await deferLater(reactor, redis_module.FORGET_WAIT + 0.05, lambda: None)
        self.assertFalse(cache._near_trusted(time.monotonic()))
        self.assertIsNone(await cache.get("app", REVISION, ONE))
        self.redis.resume()

    async def test_outage_answers_unknown_then_recovers(self) -> None:
        """
        Redis not answering: lookups answer unknown within the read timeout,
        one line is logged; once it answers again, one more line, and hits
        come back.
        """
        cache = await self.connected()
        await cache.set("app", LAYER, ONE, 3)
        self.assertEqual(await cache.get("app", LAYER, ONE), 3)
        self.redis.pause()
        # Memory is trusted a moment more: what a forget cannot outrun.
        await deferLater(reactor, redis_module.FORGET_WAIT, lambda: None)
        started = time.monotonic()
        self.assertIsNone(await cache.get("app", LAYER, ONE))
        self.assertLess(time.monotonic() - started, self.read_timeout + 0.5)
        for _ in range(20):  # and every lookup meanwhile, without waiting
            started = time.monotonic()
            self.assertIsNone(await cache.get("app", LAYER, ONE))
            self.assertLess(time.monotonic() - started, 0.1)
        self.assertEqual(len([m for m in self.messages() if "cannot be used" in m]), 1)
        self.assertEqual(cache.outages, 1)
        self.redis.resume()
        await wait_until(lambda: cache._trusted)
        self.assertEqual(len([m for m in self.messages() if "answers again after" in m]), 1)
        await cache.set("app", LAYER, ONE, 3)
        self.assertEqual(await cache.get("app", LAYER, ONE), 3)
        self.assertGreater(cache.hits, 1)

    async def test_delete_during_outage_not_undone(self) -> None:
        """
        A blob forgotten while Redis does not answer stays forgotten once
        it does: through this process and through another one that kept its
        entry all along (every cache key is dropped before trust comes back).
        """
        cache = await self.connected()
        other = await self.connected()
        await cache.set("app", LAYER, ONE, 3)
        await cache.set("app", REVISION, TWO, 4)
        self.redis.pause()
        self.assertIsNone(await cache.get("app", LAYER, ONE))  # sees the outage
        await cache.forget("app", LAYER, ONE)
        await cache.forget("app", REVISION, TWO)
        self.redis.resume()
        await wait_until(lambda: cache._trusted)
        self.assertIsNone(await cache.get("app", LAYER, ONE))
        self.assertIsNone(await cache.get("app", REVISION, TWO))
        self.assertIsNone(await other.get("app", LAYER, ONE))
        self.assertEqual(self.redis.keys(), [redis_module.GENERATION_KEY])

    async def test_killed_and_restarted(self) -> None:
        """Redis killed: unknown at once, one line; restarted: trusted again."""
        cache = await self.connected()
        await cache.set("app", LAYER, ONE, 3)
        self.redis.kill()
        await wait_until(lambda: cache._connection() is None)
        self.assertIsNone(await cache.get("app", LAYER, ONE))
        self.redis.restart()
        await wait_until(lambda: cache._trusted, timeout=20)
        await cache.set("app", LAYER, ONE, 3)
        self.assertEqual(await cache.get("app", LAYER, ONE), 3)
        self.assertEqual(cache.outages, 1)

    async def test_never_reachable(self) -> None:
        """No Redis at the address: every lookup answers unknown at once; one line."""
        self.redis.stop()
        cache = self.redis_cache()
        await deferLater(reactor, 1.0, lambda: None)
        started = time.monotonic()
        self.assertIsNone(await cache.get("app", LAYER, ONE))
        await cache.set("app", LAYER, ONE, 1)
        await cache.forget("app", LAYER, ONE)
        self.assertLess(time.monotonic() - started, 0.1)
        self.assertEqual(len(self.logged), 1)
        self.assertIn("cannot be used", self.logged[0]["log_format"])
        self.assertIn("dial timeout", str(self.logged[0]["reason"]))

    async def test_password_and_database(self) -> None:
        """AUTH and SELECT are sent: entries land in the configured database."""
        self.redis.stop()
        self.redis = RedisServerProcess(Path(temporary_directory(self)), password="sesame")
        self.redis.start()
        self.addCleanup(self.redis.stop)
        cache = await self.connected(password="sesame", db=3)
        await cache.set("app", REVISION, ONE, 1)
        self.assertEqual(await cache.get("app", REVISION, ONE), 1)
        self.assertEqual(self.redis.keys(), [])  # not in database 0

    async def test_clear_unreachable(self) -> None:
        """A Redis that cannot be reached cannot be cleared: said, and distrusted."""
        self.redis.stop()
        cache = self.redis_cache(dial_timeout=0.2)
        self.assertFalse(await cache.clear())
        self.assertTrue(cache._dirty)

    async def test_clear_keeps_other_keys(self) -> None:
        """Only the cache's keys go: Distribution's and txregistry's, not others'."""
        cache = await self.connected()
        self.redis.command("SET", "somebody::else", "1")
        await cache.set("app", LAYER, ONE, 3)
        self.assertTrue(await cache.clear())
        self.assertEqual(self.redis.keys(), ["somebody::else", redis_module.GENERATION_KEY])

    async def test_close_stops_checking(self) -> None:
        """A closed cache checks no more, and says nothing of Redis."""
        self.redis.stop()
        cache = RedisCache(self.redis_config())
        await cache.close()
        before = len(self.logged)
        await deferLater(reactor, 1.0, lambda: None)
        self.assertEqual(len(self.logged), before)

    def test_unknown_kind(self) -> None:
        """A kind Redis has no keys for is a programming error, not a miss."""
        cache = self.redis_cache()
        self.assertRaises(ValueError, cache.get, "a", "tag", ONE)
        self.assertRaises(ValueError, cache.set, "a", "tag", ONE, 1)
        self.assertRaises(ValueError, cache.forget, "a", "tag", ONE)
