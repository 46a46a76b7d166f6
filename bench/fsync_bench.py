"""
What C{storage.filesystem.fsync: true} costs pushes: the same workload
against two txregistry processes on the same disk, one with it off (the
default) and one with it on, alternated A B, B A within one run.

The workload (defaults): 200 blobs of 1 MiB, then 20 of 64 MiB, each pushed
in one monolithic C{POST ?digest=} by 4 clients at once.  Every blob is
unique (its first bytes differ) and its digest is computed before the
clock starts; each round stores into a fresh, empty storage root.

Run: C{.venv/bin/python bench/fsync_bench.py [--rounds N] [--small N]
[--large N] [--clients N] [--workdir DIR]}.  Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import cast

from common import alternated, machine
from txregistry.testing.client import request
from txregistry.testing.process import RegistryProcess, base_config

MIB = 1024 * 1024


def blobs(count: int, body: memoryview, tag: bytes) -> list[tuple[bytes, str]]:
    """C{count} unique 16-byte prefixes to C{body}, with the digests of each blob."""
    found = []
    for index in range(count):
        prefix = tag + index.to_bytes(8, "big")
        prefix = prefix[:16].ljust(16, b"\0")
        digest = hashlib.sha256(prefix)
        digest.update(body)
        found.append((prefix, "sha256:" + digest.hexdigest()))
    return found


def push_all(url: str, work: list[tuple[bytes, str]], body: memoryview, clients: int) -> float:
    """Push every blob of C{work} with C{clients} threads; the seconds it took."""
    pending = list(work)
    lock = threading.Lock()
    errors: list[str] = []

    def client() -> None:
        while True:
            with lock:
                if not pending:
                    return
                prefix, digest = pending.pop()
            response = request(
                "POST",
                f"{url}/v2/bench/fsync/blobs/uploads/?digest={digest}",
                [prefix, cast(bytes, body)],  # http.client sends any buffer
                {"Content-Length": str(16 + len(body)), "Content-Type": "application/octet-stream"},
                timeout=300,
            )
            if response.status != 201:
                errors.append(f"{response.status} {response.body[:200]!r}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} pushes failed: {errors[0]}")
    return elapsed


def main() -> int:
    """Run the benchmark; print MB/s per mode and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds of A B / B A")
    parser.add_argument("--small", type=int, default=200, help="1 MiB blobs per round")
    parser.add_argument("--large", type=int, default=20, help="64 MiB blobs per round")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workdir", type=Path, help="on the disk to measure (a temporary folder)")
    arguments = parser.parse_args()
    workdir = arguments.workdir or Path(tempfile.mkdtemp(prefix="txregistry-fsync-"))
    print(f"machine: {machine()}; storage in {workdir}", flush=True)
    sizes = [("1 MiB", arguments.small, MIB), ("64 MiB", arguments.large, 64 * MIB)]
    results: dict[tuple[str, str], list[float]] = {}
    for number in range(arguments.rounds):
        for mode in alternated(["off", "on"], number):
            root = workdir / f"root-{mode}"
            shutil.rmtree(root, ignore_errors=True)
            config = base_config(
                root,
                log={"level": "warn", "accesslog": {"disabled": True}},
                storage={
                    "filesystem": {"rootdirectory": str(root), "fsync": mode == "on"},
                    "delete": {"enabled": True},
                },
            )
            with RegistryProcess(workdir / mode, config, name=f"fsync-{mode}") as registry:
                for label, count, size in sizes:
                    if not count:
                        continue
                    tag = f"{number}{mode}{label}".encode()[:8]
                    body = memoryview(os.urandom(size))[16:]
                    work = blobs(count, body, tag)
                    os.sync()
                    elapsed = push_all(registry.url, work, body, arguments.clients)
                    rate = count * size / elapsed / 1e6
                    results.setdefault((label, mode), []).append(rate)
                    print(
                        f"round {number} fsync {mode:3} {count} x {label}: {rate:7.1f} MB/s",
                        flush=True,
                    )
            shutil.rmtree(root, ignore_errors=True)
    print()
    for label, count, _ in sizes:
        if not count:
            continue
        off = statistics.median(results[(label, "off")])
        on = statistics.median(results[(label, "on")])
        print(
            f"{count} x {label}, {arguments.clients} clients: fsync off {off:.1f} MB/s, "
            f"on {on:.1f} MB/s, on/off {on / off:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
