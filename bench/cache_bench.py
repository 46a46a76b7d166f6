"""
The Redis descriptor cache: manifest C{HEAD} and C{GET} requests/s and p99
of txregistry against Distribution 2.8 (C{docker-registry}), both with
C{storage.cache.blobdescriptor: redis}, in one run; then what a Redis that
dies under load does to txregistry.

1. Speed.  One C{redis-server} (Debian's), the reference on its database 0
   and txregistry on database 1; each with its own data folder
   (filesystem storage, log level C{warn}, no access log) and a small
   image pushed.  C{hey} (32 connections), one registry at a time,
   alternating (reference, txregistry, txregistry, reference, ...)
   C{--rounds} times per method, C{--seconds} each; medians.  Targets:
   requests/s at least 2.0x the reference's, p99 no worse.

2. Outage (C{--outage-seconds}, 0 to skip).  txregistry alone, under two
   loads at once: manifest C{HEAD}s and blob C{GET}s (C{hey}, 16
   connections each).  A third of the way in, Redis is killed
   (C{SIGKILL}); at two thirds it is started again on its port, empty.
   Every half second, Redis's C{keyspace_hits}: the lookups per second
   Redis answered (each process reads the cache's generation 20 times a
   second, and asks Redis what its memory does not hold) before, during and
   after; when txregistry logged that it trusts the cache again; and every
   status C{hey} got (no 5xx allowed).

Run: C{.venv/bin/python bench/cache_bench.py [--rounds N] [--seconds S]
[--outage-seconds S] [--json bench/results-cache.json]}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from common import (
    BenchRegistry,
    RegistryOptions,
    alternated,
    connection,
    machine,
    source_version,
    start_registry,
)
from registry_bench import (
    ACCEPT,
    IMAGE_REPOSITORY,
    TAG,
    Load,
    Workload,
    hey,
    parse_hey,
    push_image,
    push_small,
)
from txregistry.testing.redisserver import RedisServerProcess

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
SPEED_TARGET = 2.0
KINDS = ("reference", "txregistry")


@dataclass
class Slice:
    """One load of one registry."""

    registry: str
    method: str
    load: Load = field(default_factory=Load)


@dataclass
class Outage:
    """What a Redis killed under load did."""

    seconds: float = 0.0
    killed_at: float = 0.0
    restarted_at: float = 0.0
    statuses: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: int = 0
    server_errors: int = 0
    # (seconds since the start, Redis keyspace hits per second)
    hits_per_second: list[tuple[float, float]] = field(default_factory=list)
    hits_before: float = 0.0
    hits_after: float = 0.0
    # What txregistry logged of the outage, and when it trusted Redis again
    # (seconds after it was started again), if it did.
    logged: list[str] = field(default_factory=list)
    trusted_after: float | None = None


def cache_options(redis: RedisServerProcess) -> RegistryOptions:
    """Both registries with the Redis cache: the reference's database 0, txregistry's 1."""
    return RegistryOptions(
        config=["storage.cache.blobdescriptor=redis", f"redis.addr={redis.addr}"],
        # Info: the cache's lines about the outage (the access log stays off).
        txregistry_config=["redis.db=1", "log.level=info"],
    )


def keyspace_hits(redis: RedisServerProcess) -> int | None:
    """Redis's keyspace hits since it started, or L{None} while it does not answer."""
    try:
        info = redis.command("INFO", "stats", timeout=0.5)
    except OSError:
        return None
    for line in info.decode().splitlines():
        if line.startswith("keyspace_hits:"):
            return int(line.split(":")[1])
    return None


def speed(registries: dict[str, BenchRegistry], rounds: int, workload: Workload) -> list[Slice]:
    """Manifest HEADs and GETs of each registry, alternating."""
    path = f"/v2/{IMAGE_REPOSITORY}/manifests/{TAG}"
    slices: list[Slice] = []
    for method in ("HEAD", "GET"):
        for number in range(rounds):
            for kind in alternated(KINDS, number):
                load = hey(registries[kind], path, method, workload, ACCEPT)
                slices.append(Slice(kind, method, load))
                print(
                    f"{method} round {number + 1}/{rounds} {kind:10s}: {load.rps:.0f}/s, "
                    f"p99 {load.p99_ms:.1f} ms ({load.errors} errors)",
                    flush=True,
                )
    return slices


def outage(
    registry: BenchRegistry, redis: RedisServerProcess, layer: str, seconds: float
) -> Outage:
    """Two loads on txregistry; Redis killed a third of the way, back at two thirds."""
    result = Outage(seconds=seconds)
    result.killed_at = seconds / 3
    result.restarted_at = 2 * seconds / 3
    paths = {
        "HEAD manifest": ("HEAD", f"/v2/{IMAGE_REPOSITORY}/manifests/{TAG}"),
        "GET blob": ("GET", f"/v2/{IMAGE_REPOSITORY}/blobs/{layer}"),
    }
    outputs: dict[str, str] = {}

    def load(name: str, method: str, path: str) -> None:
        command = [
            shutil.which("hey") or "hey",
            "-z",
            f"{seconds:g}s",
            "-c",
            "16",
            "-m",
            method,
            "-A",
            ACCEPT,
            registry.url + path,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        outputs[name] = done.stdout

    threads = [threading.Thread(target=load, args=(name, *what)) for name, what in paths.items()]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    samples: list[tuple[float, int | None]] = []
    killed = restarted = False
    while any(thread.is_alive() for thread in threads):
        now = time.monotonic() - started
        if not killed and now >= result.killed_at:
            redis.kill()
            killed = True
            print(f"{now:5.1f} s: Redis killed", flush=True)
        if killed and not restarted and now >= result.restarted_at:
            redis.restart()
            restarted = True
            print(f"{time.monotonic() - started:5.1f} s: Redis started again", flush=True)
        samples.append((now, keyspace_hits(redis) if not killed or restarted else None))
        time.sleep(0.5)
    restarted_wall = time.time() - (time.monotonic() - started - result.restarted_at)
    for thread in threads:
        thread.join()
    for line in registry.output(lines=None).splitlines():
        if "Redis cache" in line:
            result.logged.append(line)
            if "answers again" in line:
                stamp = datetime.fromisoformat(line.split(" [", 1)[0]).timestamp()
                result.trusted_after = round(stamp - restarted_wall, 1)
    for (then, before), (now, after) in itertools.pairwise(samples):
        if before is not None and after is not None and after >= before:
            result.hits_per_second.append((round(now, 1), (after - before) / (now - then)))
        else:
            result.hits_per_second.append((round(now, 1), 0.0))
    for name, text in outputs.items():
        parsed = parse_hey(text) if "Requests/sec" in text else Load()
        result.statuses[name] = parsed.statuses
        result.errors += parsed.errors
        result.server_errors += sum(
            count for status, count in parsed.statuses.items() if status.startswith("5")
        )
    rates_before = [r for when, r in result.hits_per_second if 1 < when < result.killed_at]
    rates_after = [r for when, r in result.hits_per_second if when > result.restarted_at + 2]
    result.hits_before = statistics.median(rates_before) if rates_before else 0.0
    result.hits_after = statistics.median(rates_after) if rates_after else 0.0
    return result


def median(slices: list[Slice], registry: str, method: str, attribute: str) -> float:
    """The median of C{attribute} of C{registry}'s loads of C{method}."""
    return float(
        statistics.median(
            getattr(s.load, attribute)
            for s in slices
            if s.registry == registry and s.method == method
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0, help="each speed load's duration")
    parser.add_argument("--outage-seconds", type=float, default=15.0)
    parser.add_argument(
        "--json", type=Path, default=REPOSITORY_ROOT / "bench" / "results-cache.json"
    )
    args = parser.parse_args(argv)
    workload = Workload(load_seconds=args.seconds)
    scratch = Path(tempfile.mkdtemp(prefix="txregistry-cache-bench-"))
    registries: dict[str, BenchRegistry] = {}
    result: dict[str, Any] = {"machine": machine(), "source": source_version()}
    try:
        redis = RedisServerProcess(scratch / "redis").start()
        options = cache_options(redis)
        for kind in KINDS:
            registries[kind] = start_registry(kind, scratch / kind, options)
            push_image(registries[kind].url, "oci")
        slices = speed(registries, args.rounds, workload)
        ok = True
        print(
            f"\nmedians of {args.rounds} loads each, {workload.connections} connections, ", end=""
        )
        print(f"{args.seconds:g} s each, both with the Redis cache, their loads alternating")
        for method in ("HEAD", "GET"):
            ours = median(slices, "txregistry", method, "rps")
            theirs = median(slices, "reference", method, "rps")
            p99_ours = median(slices, "txregistry", method, "p99_ms")
            p99_theirs = median(slices, "reference", method, "p99_ms")
            ratio = ours / theirs if theirs else 0.0
            p99_ratio = p99_ours / p99_theirs if p99_theirs else 0.0
            met = ratio >= SPEED_TARGET and p99_ratio <= 1.0
            ok = ok and met
            print(
                f"manifest {method}: reference {theirs:.0f}/s p99 {p99_theirs:.1f} ms, "
                f"txregistry {ours:.0f}/s p99 {p99_ours:.1f} ms: ratio {ratio:.2f}, "
                f"p99 ratio {p99_ratio:.2f} (targets >= {SPEED_TARGET}, <= 1.0: "
                f"{'met' if met else 'NOT met'})"
            )
            result[method] = {
                "reference_rps": theirs,
                "txregistry_rps": ours,
                "ratio": ratio,
                "reference_p99_ms": p99_theirs,
                "txregistry_p99_ms": p99_ours,
                "p99_ratio": p99_ratio,
            }
        errors = sum(s.load.errors for s in slices)
        print(f"errors: {errors}")
        ok = ok and errors == 0
        result["slices"] = [asdict(s) for s in slices]
        if args.outage_seconds > 0:
            registries.pop("reference").stop()
            client = connection(registries["txregistry"].url)
            try:
                layer = push_small(
                    client, registries["txregistry"].url, IMAGE_REPOSITORY, b"x" * 4096
                )
            finally:
                client.close()
            print(f"\noutage: {args.outage_seconds:g} s of manifest HEADs and blob GETs")
            found = outage(registries["txregistry"], redis, layer, args.outage_seconds)
            for when, rate in found.hits_per_second:
                print(f"  {when:5.1f} s: {rate:7.0f} Redis hits/s")
            print(f"statuses: {found.statuses}")
            for line in found.logged:
                print(f"  txregistry: {line}")
            print(
                f"Redis hits/s: {found.hits_before:.0f} before, {found.hits_after:.0f} after "
                f"it came back; trusted again {found.trusted_after} s after Redis was; "
                f"5xx: {found.server_errors}; client errors: {found.errors}"
            )
            ok = ok and found.server_errors == 0 and found.hits_after > 0
            result["outage"] = asdict(found)
    finally:
        for registry in registries.values():
            registry.stop()
        if "redis" in locals():
            redis.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
