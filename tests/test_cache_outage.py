"""
The Redis cache dying under load, over real HTTP: a txregistry process
with C{storage.cache.blobdescriptor: redis}, manifest C{HEAD}s and blob
C{GET}s from several threads, Redis killed in the middle and started
again: no request fails, and the registry trusts the cache again.
(C{bench/cache_bench.py} measures the same with C{hey}, with figures.)
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

from conftest import Registry, StartRegistry
from manifest_support import ACCEPT_ALL, Images
from txregistry.testing.redisserver import RedisServerProcess

THREADS = 4


def _load(registry: Registry, paths: list[tuple[str, str]], stop: threading.Event) -> Counter[int]:
    """Requests in a loop until C{stop}; the statuses got."""
    statuses: Counter[int] = Counter()
    while not stop.is_set():
        for method, path in paths:
            response = registry.request(method, path, None, {"Accept": ACCEPT_ALL}, timeout=10)
            statuses[response.status] += 1
    return statuses


def test_redis_killed_under_load(start_registry_with: StartRegistry, tmp_path: Path) -> None:
    with RedisServerProcess(tmp_path / "redis") as redis:
        registry = start_registry_with(
            {
                "storage": {
                    "filesystem": {"rootdirectory": str(tmp_path / "root")},
                    "delete": {"enabled": True},
                    "cache": {"blobdescriptor": "redis"},
                },
                "redis": {"addr": redis.addr, "readtimeout": "100ms"},
                "log": {"level": "info", "accesslog": {"disabled": True}},
            }
        )
        repo = "outage/app"
        images = Images(registry, repo)
        digest = images.push("v1", images.image(layers=1))
        layer = registry.push(repo, os.urandom(4096))
        paths = [("HEAD", f"{repo}/manifests/v1"), ("GET", f"{repo}/blobs/{layer}")]
        stop = threading.Event()
        results: list[Counter[int]] = []
        threads = [
            threading.Thread(target=lambda: results.append(_load(registry, paths, stop)))
            for _ in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1)
            redis.kill()
            time.sleep(1)
            redis.restart()
            deadline = time.monotonic() + 15
            while "answers again" not in registry.process.output(lines=None):
                assert time.monotonic() < deadline, registry.process.output()
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        statuses = sum(results, Counter())
        assert set(statuses) == {200}, statuses
        assert sum(statuses.values()) > 100
        log = registry.process.output(lines=None)
        assert log.count("cannot be used") == 1, log
        # The cache is used again: the lookups go to Redis (the manifest's
        # revision, under txregistry's key).
        key = f"txregistry::repository::{repo}::revisions::{digest}"
        deadline = time.monotonic() + 5
        while key not in redis.keys("txregistry::*"):
            assert time.monotonic() < deadline, redis.keys()
            registry.request("HEAD", f"{repo}/manifests/v1", None, {"Accept": ACCEPT_ALL})
            time.sleep(0.1)
