"""
The pull-through cache (issue 15): a blob's first pull through a txregistry
proxy against a direct pull from its upstream, and a pull of the cached blob
against one from a plain txregistry, with the proxy's peak RSS; and, for
comparison, the same pulls through Distribution's own pull-through cache;
at several blob sizes, in one run, on one machine.

Set-up, once: the upstream, Distribution's C{docker-registry} (the
reference), and a plain txregistry (no C{proxy} section), each on a free
port of 127.0.0.1 with its own data folder (filesystem storage, the
in-memory descriptor cache, log level C{warn}, no access log); every blob
pushed to both (C{POST}, one C{PUT ?digest=}), then pulled once from each
and hashed, which checks it and puts it in the page cache.  Then the
scratch folder's write speed, for a first pull must write the blob: 1 GiB
written in 4 MiB C{os.write} calls, three times in a row (and once after
the rounds), each then C{fsync}-ed, timed apart.

Each round of each size starts two fresh proxies of the upstream, each with
its own empty data folder, so the blob is cached in neither: txregistry
with C{proxy.remoteurl}, and C{docker-registry} with the same C{proxy}
section (Distribution's proxy); and pulls a 1 MiB warm-up blob through each
twice (their code paths, their connections to upstream).  Then, back to
back, a direct pull from upstream, the first pull through txregistry's
proxy and the first through Distribution's, in alternating order with
txregistry's in the middle, so that each of its ratios comes from two pulls
made one after the other; then triples (three by default) of a pull from
the plain txregistry, one from txregistry's proxy and one from
Distribution's, both proxies now serving the blob from their storage,
ordered likewise.  Every round thus pulls the same upstream file,
page-cached, into empty proxies: rounds differ only by the machine's noise
(a fresh blob per round would instead cost a push per round and differ in
what the page cache holds).  After the pulls, each proxy's C{VmHWM} (its
peak RSS since it started: nothing resets it).

Distribution's proxy answers a first pull from upstream while a goroutine
fetches the blob from upstream a second time into its storage.  After its
first pull, the round waits until its storage holds the blob (the data and
the repository's link), so that no later pull shares the machine with that
store, and records how long that took from the C{GET}.

Pulls are C{http.client} reading into a 1 MiB buffer (as
C{registry_bench.py}'s, not hashed while timed), the same on every side.
MB/s = size / time from sending the C{GET} to the last byte; the ratios
are medians of the pulls taken back to back.  Since each round starts a
proxy from the checkout, the run warns when txregistry's sources changed
meanwhile.  Only 127.0.0.1 is ever contacted.

Run: C{.venv/bin/python bench/proxy_bench.py [--quick] [--sizes-mib 16,256,1024]
[--rounds N] [--scratch DIR] [--json bench/results-proxy.json]}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from blob_bench import blob_data_path
from common import (
    MB,
    MIB,
    BenchRegistry,
    Pattern,
    RegistryOptions,
    add_registry_options,
    alternated,
    connection,
    machine,
    make_pattern,
    registry_options,
    rss_mb,
    source_version,
    start_registry,
    tree_cpu_seconds,
    tree_kib,
)
from gc_bench import source_fingerprint
from registry_bench import (
    DEFAULT_CONFIG,
    Blob,
    Profile,
    hot_functions,
    make_blobs,
    pull_blob,
    push_put,
)

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = "bench/proxy"
WARM_UP_SIZE = MIB
GIB = 1024 * MIB

# The targets, for a 1 GiB blob.
TARGET_SIZE = GIB
FIRST_PULL_TARGET = 0.8
CACHED_PULL_TARGET = 0.9
PEAK_RSS_TARGET_MB = 150.0

FULL_SIZES_MIB = (16, 256, 1024)
QUICK_SIZES_MIB = (16, 64)

DIRECT, FIRST, PLAIN, CACHED = "direct", "first", "plain", "cached"
# The benchmark's own process, which pulls, in the CPU figures.
CLIENT = "client"
# Pulls through Distribution's pull-through cache: its first, and from its storage.
DISTRIBUTION_FIRST, DISTRIBUTION_CACHED = "distribution_first", "distribution_cached"

# How the scratch folder's write speed is measured.
DISK_WRITE_SIZE = GIB
DISK_WRITE_CHUNK = 4 * MIB
# Measured this many times in a row before the rounds (the first write of a run has
# been several times slower than the next ones here), and once after.
DISK_WRITES_BEFORE = 3
# How long Distribution's proxy may take to store a blob after its first pull.
STORE_TIMEOUT = 300.0


@dataclass
class Pull:
    """
    One timed pull, and the CPU each registry process and the client used
    meanwhile; for a first pull through Distribution's proxy, also the
    time from the C{GET} until the blob was in its storage, and the CPU
    until then.
    """

    seconds: float = 0.0
    mb_per_s: float = 0.0
    cpu_user_seconds: dict[str, float] = field(default_factory=dict)
    cpu_system_seconds: dict[str, float] = field(default_factory=dict)
    stored_seconds: float | None = None
    stored_cpu_user_seconds: dict[str, float] = field(default_factory=dict)
    stored_cpu_system_seconds: dict[str, float] = field(default_factory=dict)

    def cpu_seconds(self, process: str) -> float:
        """User + system CPU seconds of C{process} during the pull."""
        return self.cpu_user_seconds.get(process, 0.0) + self.cpu_system_seconds.get(process, 0.0)

    def cpu_percent(self, process: str) -> float:
        """C{process}'s CPU over the pull's time, in % of one CPU."""
        return 100 * self.cpu_seconds(process) / self.seconds if self.seconds else 0.0

    def total_cpu_percent(self) -> float:
        """Every process's CPU (the client's too) over the pull's time, in % of one CPU."""
        return sum(self.cpu_percent(process) for process in self.cpu_user_seconds)

    def stored_cpu_seconds(self, process: str) -> float:
        """User + system CPU seconds of C{process} from the C{GET} until the blob was stored."""
        return self.stored_cpu_user_seconds.get(process, 0.0) + self.stored_cpu_system_seconds.get(
            process, 0.0
        )


@dataclass
class Round:
    """
    One round at one size: a fresh proxy of each kind; a direct pull and a
    first pull through each; triples of a plain and a cached pull from
    each proxy.
    """

    size: int
    index: int
    order: list[str] = field(default_factory=list)
    pulls: dict[str, list[Pull]] = field(default_factory=dict)
    proxy_idle_rss_mb: float = 0.0
    # VmHWM of the proxy after its warm-up, after the first pulls, at the end.
    proxy_hwm_warm_mb: float = 0.0
    proxy_hwm_first_mb: float = 0.0
    proxy_peak_rss_mb: float = 0.0
    # The same of Distribution's proxy.
    distribution_idle_rss_mb: float = 0.0
    distribution_hwm_warm_mb: float = 0.0
    distribution_hwm_first_mb: float = 0.0
    distribution_peak_rss_mb: float = 0.0
    profile: str | None = None

    def pull(self, kind: str) -> Pull:
        """The round's (first) pull of C{kind}."""
        return self.pulls[kind][0]

    def median_mb_per_s(self, kind: str) -> float:
        """The median MB/s of the round's pulls of C{kind}."""
        return statistics.median(pull.mb_per_s for pull in self.pulls[kind])

    @property
    def first_ratio(self) -> float:
        """First pull through the proxy / direct pull from upstream (MB/s)."""
        return self.pull(FIRST).mb_per_s / self.pull(DIRECT).mb_per_s

    @property
    def cached_ratios(self) -> list[float]:
        """Each triple's cached pull from the proxy / pull from the plain txregistry (MB/s)."""
        return self._ratios(CACHED, PLAIN)

    @property
    def first_vs_distribution(self) -> float:
        """First pull through txregistry's proxy / first through Distribution's (MB/s)."""
        return self.pull(FIRST).mb_per_s / self.pull(DISTRIBUTION_FIRST).mb_per_s

    @property
    def cached_vs_distribution(self) -> list[float]:
        """Each triple's cached pull from txregistry's proxy / from Distribution's (MB/s)."""
        return self._ratios(CACHED, DISTRIBUTION_CACHED)

    def _ratios(self, kind: str, other: str) -> list[float]:
        return [
            one.mb_per_s / two.mb_per_s
            for one, two in zip(self.pulls[kind], self.pulls[other], strict=True)
        ]


def hwm_mb(pid: int) -> float:
    """
    The process's C{VmHWM}, its peak RSS so far (summed over its process
    tree), in MB (10^6 bytes).
    """
    return tree_kib(pid, "VmHWM") * 1024 / MB


def _cpu(pids: Mapping[str, int]) -> dict[str, tuple[float, float]]:
    """The user and system CPU seconds so far of the processes C{pids} and of this one."""
    # Not tree_cpu_seconds for this process: the registries are its children.
    user, system = os.times()[:2]
    return {**{name: tree_cpu_seconds(pid) for name, pid in pids.items()}, CLIENT: (user, system)}


def _spent(
    before: Mapping[str, tuple[float, float]], after: Mapping[str, tuple[float, float]]
) -> tuple[dict[str, float], dict[str, float]]:
    """The user and the system CPU seconds each process used from C{before} to C{after}."""
    user = {name: after[name][0] - before[name][0] for name in before}
    system = {name: after[name][1] - before[name][1] for name in before}
    return user, system


def timed_pull(
    base_url: str,
    blob: Blob,
    pids: Mapping[str, int],
    until_stored: Callable[[], None] | None = None,
) -> Pull:
    """
    Pull C{blob} from C{base_url}, timed, recording the CPU of the processes
    C{pids}; then, given C{until_stored} (which returns once the proxy holds
    the blob), call it and record the time and the CPU from the C{GET}
    until then.
    """
    before = _cpu(pids)
    began = time.perf_counter()
    pull_blob(base_url, REPOSITORY, blob, check=False)
    seconds = time.perf_counter() - began
    user, system = _spent(before, _cpu(pids))
    pull = Pull(seconds, blob.size / MB / seconds, user, system)
    if until_stored is not None:
        until_stored()
        pull.stored_seconds = time.perf_counter() - began
        pull.stored_cpu_user_seconds, pull.stored_cpu_system_seconds = _spent(before, _cpu(pids))
    return pull


def storage_root(registry: BenchRegistry) -> Path:
    """Where C{start_registry} keeps the registry's filesystem storage."""
    return registry.workdir / "data"


def is_stored(root: Path, blob: Blob) -> bool:
    """
    Whether the registry whose storage is under C{root} holds C{blob}: its
    data whole, and the link of the benchmark's repository to it.
    """
    hex_digest = blob.digest.removeprefix("sha256:")
    link = root / f"docker/registry/v2/repositories/{REPOSITORY}/_layers/sha256/{hex_digest}/link"
    try:
        data_size = (root / blob_data_path(blob.digest)).stat().st_size
        return data_size == blob.size and link.read_text() == blob.digest
    except OSError:
        return False


def wait_until_stored(root: Path, blob: Blob, timeout: float = STORE_TIMEOUT) -> None:
    """Return once the storage under C{root} holds C{blob} (L{is_stored}), polled every 5 ms."""
    deadline = time.monotonic() + timeout
    while not is_stored(root, blob):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{blob.digest} was not stored under {root} within {timeout:g} s")
        time.sleep(0.005)


@dataclass
class DiskWrite:
    """How fast the scratch folder took 1 GiB written in 4 MiB C{os.write} calls."""

    seconds: float = 0.0
    mb_per_s: float = 0.0
    # An fsync after the writes, for information: the filesystem drivers sync what they commit.
    fsync_seconds: float = 0.0
    with_fsync_mb_per_s: float = 0.0


def measure_disk_write(
    folder: Path, data: bytes, size: int = DISK_WRITE_SIZE, chunk: int = DISK_WRITE_CHUNK
) -> DiskWrite:
    """
    Write C{size} bytes (C{data} repeated, C{chunk} bytes a call) to a new
    file in C{folder}, timed, then fsync it, timed apart; delete the file.
    Dirty pages written before are flushed first, so they do not share the
    time.
    """
    os.sync()
    view = memoryview(data)[:chunk]
    path = folder / "disk-write-test"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        began = time.perf_counter()
        written = 0
        while written < size:
            piece = view[: size - written]
            while piece:
                count = os.write(descriptor, piece)
                written += count
                piece = piece[count:]
        seconds = time.perf_counter() - began
        os.fsync(descriptor)
        with_fsync = time.perf_counter() - began
    finally:
        os.close(descriptor)
        path.unlink()
    return DiskWrite(seconds, size / MB / seconds, with_fsync - seconds, size / MB / with_fsync)


def filesystem_type(path: Path) -> str:
    """The type of the file system C{path} is on (C{ext4}, C{tmpfs}), from C{/proc/mounts}."""
    resolved = str(path.resolve())
    best, kind = "", "unknown"
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            mount_point = fields[1]
            inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) >= len(best):
                best, kind = mount_point, fields[2]
    return kind


def push(registry: BenchRegistry, blobs: Sequence[Blob]) -> None:
    """Push every blob to the registry, on one connection."""
    client = connection(registry.url)
    try:
        for blob in blobs:
            push_put(client, registry.url, REPOSITORY, blob)
    finally:
        client.close()


@dataclass
class Setup:
    """The processes every round uses, and how to start the proxies."""

    upstream: BenchRegistry
    plain: BenchRegistry
    warm_up: Blob
    options: RegistryOptions
    scratch: Path
    cached_triples: int = 3
    profile: Path | None = None
    profile_mode: str = "gil"

    @property
    def remote(self) -> str:
        """The config assignment that makes a registry a pull-through cache of the upstream."""
        return f"proxy={{remoteurl: '{self.upstream.url}'}}"

    def start_proxy(self, workdir: Path) -> BenchRegistry:
        """A fresh txregistry pull-through cache of the upstream, its data under C{workdir}."""
        options = RegistryOptions(
            config=self.options.config,
            txregistry_config=[*self.options.txregistry_config, self.remote],
            twist_args=self.options.twist_args,
            txregistry_args=self.options.txregistry_args,
            txregistry_env=self.options.txregistry_env,
        )
        return start_registry("txregistry", workdir, options)

    def start_distribution_proxy(self, workdir: Path) -> BenchRegistry:
        """
        A fresh Distribution pull-through cache of the upstream
        (C{docker-registry serve} with the same C{proxy} section), its data
        under C{workdir}.
        """
        options = RegistryOptions(config=[*self.options.config, self.remote])
        return start_registry("reference", workdir, options)


def bench_round(setup: Setup, blob: Blob, index: int) -> Round:
    """One round at one size (see the module's docstring)."""
    result = Round(blob.size, index)
    workdir = Path(tempfile.mkdtemp(prefix=f"proxy-{blob.size // MIB}-", dir=setup.scratch))
    proxies: list[BenchRegistry] = []
    try:
        # What earlier rounds wrote and deleted is not flushed while this one is timed.
        os.sync()
        proxy = setup.start_proxy(workdir / "txregistry")
        proxies.append(proxy)
        distribution = setup.start_distribution_proxy(workdir / "distribution")
        proxies.append(distribution)
        result.proxy_idle_rss_mb = rss_mb(proxy.pid)
        result.distribution_idle_rss_mb = rss_mb(distribution.pid)
        for registry in proxies:
            for _ in range(2):
                pull_blob(registry.url, REPOSITORY, setup.warm_up, check=True)
            # Distribution's proxy stores it in the background: not while the pulls are timed.
            wait_until_stored(storage_root(registry), setup.warm_up)
        result.proxy_hwm_warm_mb = hwm_mb(proxy.pid)
        result.distribution_hwm_warm_mb = hwm_mb(distribution.pid)
        pids = {
            "upstream": setup.upstream.pid,
            "proxy": proxy.pid,
            "distribution": distribution.pid,
            "plain": setup.plain.pid,
        }
        urls = {DIRECT: setup.upstream.url, FIRST: proxy.url, DISTRIBUTION_FIRST: distribution.url}
        for kind in alternated((DIRECT, FIRST, DISTRIBUTION_FIRST), index):
            profile_path = None
            if kind == FIRST and setup.profile is not None:
                profile_path = setup.profile / f"first-{blob.size // MIB}MiB-round{index + 1}.txt"
                result.profile = str(profile_path)
            until_stored = None
            if kind == DISTRIBUTION_FIRST:
                until_stored = partial(wait_until_stored, storage_root(distribution), blob)
            with Profile(proxy.pid, profile_path, setup.profile_mode):
                result.pulls[kind] = [timed_pull(urls[kind], blob, pids, until_stored)]
            result.order.append(kind)
        result.proxy_hwm_first_mb = hwm_mb(proxy.pid)
        result.distribution_hwm_first_mb = hwm_mb(distribution.pid)
        if not is_stored(storage_root(proxy), blob):
            raise RuntimeError(f"the proxy did not cache {blob.digest} ({storage_root(proxy)})")
        urls = {PLAIN: setup.plain.url, CACHED: proxy.url, DISTRIBUTION_CACHED: distribution.url}
        cached_kinds = (PLAIN, CACHED, DISTRIBUTION_CACHED)
        for kind in cached_kinds:
            result.pulls[kind] = []
        for triple in range(setup.cached_triples):
            for kind in alternated(cached_kinds, index + triple):
                result.pulls[kind].append(timed_pull(urls[kind], blob, pids))
                result.order.append(kind)
        result.proxy_peak_rss_mb = hwm_mb(proxy.pid)
        result.distribution_peak_rss_mb = hwm_mb(distribution.pid)
        if index == 0:
            # What each proxy stored, and serves, is the blob (untimed).
            for registry in proxies:
                pull_blob(registry.url, REPOSITORY, blob, check=True)
    except BaseException:
        for registry in proxies:
            print(f"{registry.name}:\n{registry.output()[-4000:]}", file=sys.stderr)
        raise
    finally:
        for registry in proxies:
            registry.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return result


# -- reporting ---------------------------------------------------------------------------------


def _median(rounds: Sequence[Round], figure: Callable[[Round], float]) -> float:
    return statistics.median(figure(one) for one in rounds)


def summarize(rounds: Sequence[Round]) -> list[dict[str, float]]:
    """Medians per size (smallest first), and the cost from one size to the next."""
    rows: list[dict[str, float]] = []
    for size in sorted({one.size for one in rounds}):
        mine = [one for one in rounds if one.size == size]
        first_seconds = _median(mine, lambda one: one.pull(FIRST).seconds)
        direct_seconds = _median(mine, lambda one: one.pull(DIRECT).seconds)
        plain = [pull for one in mine for pull in one.pulls[PLAIN]]
        cached = [pull for one in mine for pull in one.pulls[CACHED]]
        row = {
            "size_mib": size / MIB,
            "rounds": len(mine),
            "direct_mb_per_s": _median(mine, lambda one: one.pull(DIRECT).mb_per_s),
            "first_mb_per_s": _median(mine, lambda one: one.pull(FIRST).mb_per_s),
            "first_ratio": _median(mine, lambda one: one.first_ratio),
            "plain_mb_per_s": statistics.median(pull.mb_per_s for pull in plain),
            "cached_mb_per_s": statistics.median(pull.mb_per_s for pull in cached),
            "cached_ratio": statistics.median(r for one in mine for r in one.cached_ratios),
            "proxy_peak_rss_mb": max(one.proxy_peak_rss_mb for one in mine),
            "proxy_idle_rss_mb": _median(mine, lambda one: one.proxy_idle_rss_mb),
            "proxy_hwm_warm_mb": _median(mine, lambda one: one.proxy_hwm_warm_mb),
            "direct_seconds": direct_seconds,
            "first_seconds": first_seconds,
            "first_seconds_per_gib": first_seconds / (size / GIB),
            "direct_seconds_per_gib": direct_seconds / (size / GIB),
            "first_proxy_cpu_percent": _median(
                mine, lambda one: one.pull(FIRST).cpu_percent("proxy")
            ),
            "first_proxy_user_seconds": _median(
                mine, lambda one: one.pull(FIRST).cpu_user_seconds["proxy"]
            ),
            "first_proxy_system_seconds": _median(
                mine, lambda one: one.pull(FIRST).cpu_system_seconds["proxy"]
            ),
            "first_upstream_cpu_percent": _median(
                mine, lambda one: one.pull(FIRST).cpu_percent("upstream")
            ),
            "first_client_cpu_percent": _median(
                mine, lambda one: one.pull(FIRST).cpu_percent(CLIENT)
            ),
            "first_total_cpu_percent": _median(
                mine, lambda one: one.pull(FIRST).total_cpu_percent()
            ),
            "direct_upstream_cpu_percent": _median(
                mine, lambda one: one.pull(DIRECT).cpu_percent("upstream")
            ),
            "cached_proxy_cpu_percent": statistics.median(
                pull.cpu_percent("proxy") for pull in cached
            ),
            "plain_cpu_percent": statistics.median(pull.cpu_percent("plain") for pull in plain),
            **_distribution_figures(mine),
        }
        row["rss_vs_distribution"] = row["proxy_peak_rss_mb"] / row["distribution_peak_rss_mb"]
        if rows:
            before = rows[-1]
            added_gib = (row["size_mib"] - before["size_mib"]) / 1024
            row["first_marginal_seconds_per_gib"] = (
                first_seconds - before["first_seconds"]
            ) / added_gib
            row["direct_marginal_seconds_per_gib"] = (
                direct_seconds - before["direct_seconds"]
            ) / added_gib
        rows.append(row)
    return rows


def _distribution_figures(mine: Sequence[Round]) -> dict[str, float]:
    """The medians of Distribution's proxy at one size, and txregistry's against them."""
    cached = [pull for one in mine for pull in one.pulls[DISTRIBUTION_CACHED]]

    def first(one: Round) -> Pull:
        return one.pull(DISTRIBUTION_FIRST)

    return {
        "distribution_first_mb_per_s": _median(mine, lambda one: first(one).mb_per_s),
        "first_vs_distribution": _median(mine, lambda one: one.first_vs_distribution),
        "distribution_first_vs_direct": _median(
            mine, lambda one: first(one).mb_per_s / one.pull(DIRECT).mb_per_s
        ),
        "distribution_cached_mb_per_s": statistics.median(pull.mb_per_s for pull in cached),
        "cached_vs_distribution": statistics.median(
            r for one in mine for r in one.cached_vs_distribution
        ),
        "distribution_peak_rss_mb": max(one.distribution_peak_rss_mb for one in mine),
        "distribution_idle_rss_mb": _median(mine, lambda one: one.distribution_idle_rss_mb),
        "distribution_first_seconds": _median(mine, lambda one: first(one).seconds),
        "distribution_stored_seconds": _median(mine, lambda one: first(one).stored_seconds or 0.0),
        "distribution_first_cpu_percent": _median(
            mine, lambda one: first(one).cpu_percent("distribution")
        ),
        "distribution_stored_user_seconds": _median(
            mine, lambda one: first(one).stored_cpu_user_seconds["distribution"]
        ),
        "distribution_stored_system_seconds": _median(
            mine, lambda one: first(one).stored_cpu_system_seconds["distribution"]
        ),
        "distribution_stored_upstream_cpu_seconds": _median(
            mine, lambda one: first(one).stored_cpu_seconds("upstream")
        ),
        "distribution_cached_cpu_percent": statistics.median(
            pull.cpu_percent("distribution") for pull in cached
        ),
    }


def verdicts(rows: Sequence[dict[str, float]]) -> dict[str, Any]:
    """
    The issue's targets, judged at 1 GiB (the largest size measured when
    1 GiB was not): the two ratios, and the proxy's peak RSS at that size.
    """
    row = next((row for row in rows if row["size_mib"] * MIB == TARGET_SIZE), rows[-1])
    checks = {
        "first_ratio": (row["first_ratio"], ">=", FIRST_PULL_TARGET),
        "cached_ratio": (row["cached_ratio"], ">=", CACHED_PULL_TARGET),
        "proxy_peak_rss_mb": (row["proxy_peak_rss_mb"], "<=", PEAK_RSS_TARGET_MB),
    }
    result: dict[str, Any] = {"size_mib": row["size_mib"]}
    for name, (value, comparison, bound) in checks.items():
        met = value >= bound if comparison == ">=" else value <= bound
        result[name] = {"value": value, "target": f"{comparison} {bound:g}", "met": met}
    return result


def _format(rows: Sequence[dict[str, float]], columns: Sequence[tuple[str, str, str]]) -> str:
    widths = [max(len(heading), 8) for heading, _, _ in columns]
    headings = zip(columns, widths, strict=True)
    lines = ["  ".join(f"{heading:>{width}}" for (heading, _, _), width in headings)]
    for row in rows:
        cells = []
        for (_, key, form), width in zip(columns, widths, strict=True):
            value = row.get(key)
            cells.append(f"{'-':>{width}}" if value is None else f"{value:>{width}{form}}")
        lines.append("  ".join(cells))
    return "\n".join(lines)


THROUGHPUT_COLUMNS = (
    ("blob MiB", "size_mib", ".0f"),
    ("direct MB/s", "direct_mb_per_s", ".1f"),
    ("first via proxy MB/s", "first_mb_per_s", ".1f"),
    ("ratio", "first_ratio", ".2f"),
    ("plain tx MB/s", "plain_mb_per_s", ".1f"),
    ("proxy cached MB/s", "cached_mb_per_s", ".1f"),
    ("ratio", "cached_ratio", ".2f"),
    ("proxy peak RSS MB", "proxy_peak_rss_mb", ".1f"),
)
COST_COLUMNS = (
    ("blob MiB", "size_mib", ".0f"),
    ("direct s", "direct_seconds", ".3f"),
    ("first s", "first_seconds", ".3f"),
    ("first s/GiB", "first_seconds_per_gib", ".2f"),
    ("marginal s/GiB", "first_marginal_seconds_per_gib", ".2f"),
    ("direct marg. s/GiB", "direct_marginal_seconds_per_gib", ".2f"),
    ("proxy CPU %", "first_proxy_cpu_percent", ".0f"),
    ("user s", "first_proxy_user_seconds", ".2f"),
    ("sys s", "first_proxy_system_seconds", ".2f"),
    ("upstream CPU % direct", "direct_upstream_cpu_percent", ".0f"),
    ("upstream CPU % first", "first_upstream_cpu_percent", ".0f"),
    ("client CPU % first", "first_client_cpu_percent", ".0f"),
    ("all CPU % first", "first_total_cpu_percent", ".0f"),
    ("proxy idle RSS MB", "proxy_idle_rss_mb", ".1f"),
)
DISTRIBUTION_COLUMNS = (
    ("blob MiB", "size_mib", ".0f"),
    ("D first MB/s", "distribution_first_mb_per_s", ".1f"),
    ("tx/D first", "first_vs_distribution", ".2f"),
    ("D/direct", "distribution_first_vs_direct", ".2f"),
    ("D cached MB/s", "distribution_cached_mb_per_s", ".1f"),
    ("tx/D cached", "cached_vs_distribution", ".2f"),
    ("D peak RSS MB", "distribution_peak_rss_mb", ".1f"),
    ("tx/D RSS", "rss_vs_distribution", ".2f"),
    ("D stored s", "distribution_stored_seconds", ".3f"),
    ("D user s", "distribution_stored_user_seconds", ".2f"),
    ("D sys s", "distribution_stored_system_seconds", ".2f"),
    ("upstream CPU s", "distribution_stored_upstream_cpu_seconds", ".2f"),
    ("D idle RSS MB", "distribution_idle_rss_mb", ".1f"),
)


def report(
    rows: Sequence[dict[str, float]],
    checks: Mapping[str, Any],
    rounds: int,
    disk: Mapping[str, Sequence[DiskWrite]],
    scratch: str,
) -> str:
    """The tables, the targets and the comparison with Distribution's proxy, as text."""
    size = f"{checks['size_mib']:.0f} MiB"
    lines = [
        f"median of {rounds} round(s) per size; MB = 10^6 bytes; ratios: medians of the "
        "back-to-back pairs (first via proxy / direct from upstream, one a round; proxy "
        "cached / plain txregistry, several a round); proxy peak RSS: the largest VmHWM "
        "of the rounds' proxies",
        _format(rows, THROUGHPUT_COLUMNS),
        "",
        "how the first pull's cost grows (medians; marginal = from the size before; CPU "
        "during the first pull through the proxy, 100 % = one CPU; all: the client's and "
        f"every registry's, of {100 * (os.cpu_count() or 1)} %):",
        _format(rows, COST_COLUMNS),
        "",
        "Distribution's pull-through cache (D: docker-registry with the same proxy section), "
        "for information: its first and cached pulls (medians), tx/D = txregistry's proxy / "
        "Distribution's (medians of the back-to-back pulls; RSS: the largest VmHWM of each); "
        "D/direct: its first pull / the direct pull of the same round; "
        "D stored s: from its first GET until the blob was in its storage (it fetches it "
        "again from upstream to store it); D user, sys, upstream CPU s: until then",
        _format(rows, DISTRIBUTION_COLUMNS),
        "",
        "disk write MB/s, the scratch folder "
        f"({scratch}; {DISK_WRITE_SIZE // MIB} MiB in {DISK_WRITE_CHUNK // MIB} MiB os.write "
        "calls, no fsync; with an fsync after the writes in brackets): "
        + "; ".join(
            f"{when} "
            + ", ".join(f"{one.mb_per_s:.0f} ({one.with_fsync_mb_per_s:.0f})" for one in writes)
            for when, writes in disk.items()
        ),
        "",
        f"targets (issue 15) at {size}:",
    ]
    names = {
        "first_ratio": "first pull via proxy / direct from upstream",
        "cached_ratio": "cached pull from proxy / plain txregistry",
        "proxy_peak_rss_mb": "proxy peak RSS, MB",
    }
    for key, name in names.items():
        check = checks[key]
        verdict = "PASS" if check["met"] else "FAIL"
        lines.append(f"  {name:<46}{check['value']:>9.3f}  {check['target']:<8}  {verdict}")
    if checks["size_mib"] * MIB != TARGET_SIZE:
        lines.append(f"  (the issue's targets are for 1024 MiB; this run's largest is {size})")
    row = next(row for row in rows if row["size_mib"] == checks["size_mib"])
    lines.append(f"against Distribution's pull-through cache at {size} (information, no target):")
    comparisons = {
        "first_vs_distribution": "first pull, txregistry's proxy / Distribution's",
        "cached_vs_distribution": "cached pull, txregistry's proxy / Distribution's",
        "rss_vs_distribution": "peak RSS, txregistry's proxy / Distribution's",
    }
    for key, name in comparisons.items():
        lines.append(f"  {name:<50}{row[key]:>9.3f}")
    return "\n".join(lines)


def describe_round(one: Round) -> str:
    """One round's figures, on one line."""
    first = one.pull(FIRST)
    distribution = one.pull(DISTRIBUTION_FIRST)
    return (
        f"direct {one.pull(DIRECT).mb_per_s:.0f}, first {first.mb_per_s:.0f} MB/s "
        f"({one.first_ratio:.2f}; proxy CPU {first.cpu_percent('proxy'):.0f} %), "
        f"D {distribution.mb_per_s:.0f} (stored {distribution.stored_seconds:.2f} s); "
        f"plain {one.median_mb_per_s(PLAIN):.0f}, cached {one.median_mb_per_s(CACHED):.0f}, "
        f"D {one.median_mb_per_s(DISTRIBUTION_CACHED):.0f} MB/s "
        f"(median of {len(one.pulls[CACHED])}; {statistics.median(one.cached_ratios):.2f}); "
        f"VmHWM proxy {one.proxy_peak_rss_mb:.0f}, D {one.distribution_peak_rss_mb:.0f} MB"
    )


def parse_sizes(text: str) -> list[int]:
    """C{"16,256,1024"}: sizes in MiB, as bytes."""
    try:
        sizes = [int(item) * MIB for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of MiB") from None
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of MiB")
    return sorted(set(sizes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 16 and 64 MiB blobs, 3 rounds (seconds)",
    )
    parser.add_argument(
        "--sizes-mib",
        type=parse_sizes,
        default=None,
        help="blob sizes, comma-separated (default 16,256,1024)",
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds per size (default 5)")
    parser.add_argument(
        "--cached-pulls",
        "--cached-pairs",
        dest="cached_pulls",
        type=int,
        default=3,
        help="pulls of the cached blob from each proxy (each with one from the plain "
        "txregistry) in each round (default 3)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=REPOSITORY_ROOT / "bench" / "results-proxy.json",
        help="where to write every figure",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy record the proxy during each first pull, into DIR (raw collapsed "
        "stacks), and print its top functions at the largest size; this slows it down",
    )
    parser.add_argument(
        "--profile-mode",
        choices=("gil", "wall"),
        default="gil",
        help="as registry_bench.py's: gil (where Python spends CPU) or wall (every busy thread)",
    )
    parser.add_argument(
        "--scratch", type=Path, default=None, help="where data folders go (default: /tmp)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the random pattern")
    add_registry_options(parser)
    args = parser.parse_args(argv)

    sizes = args.sizes_mib or [
        size * MIB for size in (QUICK_SIZES_MIB if args.quick else FULL_SIZES_MIB)
    ]
    rounds_wanted = args.rounds or (3 if args.quick else 5)
    if shutil.which("docker-registry") is None:
        parser.error("docker-registry is not installed (apt-get install docker-registry)")
    options = registry_options(args, DEFAULT_CONFIG)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    if args.scratch is not None:
        args.scratch.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="proxy-bench-", dir=args.scratch))
    scratch_description = f"{scratch.parent}, {filesystem_type(scratch)}"
    began = time.perf_counter()
    version = source_version()
    fingerprint = source_fingerprint(REPOSITORY_ROOT)
    print(f"txregistry at {version} (sources {fingerprint}); {options.describe()}", flush=True)
    print(f"scratch folder: {scratch} ({filesystem_type(scratch)})", flush=True)
    rounds: list[Round] = []
    disk: dict[str, list[DiskWrite]] = {}
    started: list[BenchRegistry] = []
    try:
        pattern = Pattern(make_pattern(args.seed))
        # A pattern of its own for each blob (rotated), so that no two share a digest.
        specs = [(pattern.rotated(index + 1), size) for index, size in enumerate(sizes)]
        warm_up, *blobs = make_blobs([(pattern, WARM_UP_SIZE), *specs])
        print(f"preparing: pushing {len(blobs) + 1} blobs to the upstream", flush=True)
        upstream = start_registry("reference", scratch / "upstream", options)
        started.append(upstream)
        push(upstream, [warm_up, *blobs])
        plain = start_registry("txregistry", scratch / "plain", options)
        started.append(plain)
        push(plain, blobs)
        for blob in blobs:
            for registry in (upstream, plain):
                pull_blob(registry.url, REPOSITORY, blob, check=True)
        setup = Setup(
            upstream,
            plain,
            warm_up,
            options,
            scratch,
            args.cached_pulls,
            args.profile,
            args.profile_mode,
        )
        disk["before the rounds"] = [
            measure_disk_write(scratch, pattern.data) for _ in range(DISK_WRITES_BEFORE)
        ]
        print(
            f"set up in {time.perf_counter() - began:.0f} s; disk write MB/s "
            + ", ".join(f"{one.mb_per_s:.0f}" for one in disk["before the rounds"]),
            flush=True,
        )
        for blob in blobs:
            for index in range(rounds_wanted):
                print(
                    f"{blob.size // MIB} MiB, round {index + 1}/{rounds_wanted}: ",
                    end="",
                    flush=True,
                )
                one = bench_round(setup, blob, index)
                rounds.append(one)
                print(describe_round(one), flush=True)
        disk["after"] = [measure_disk_write(scratch, pattern.data)]
    finally:
        for registry in started:
            registry.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    rows = summarize(rounds)
    checks = verdicts(rows)
    elapsed = time.perf_counter() - began
    # Each round starts its own proxy: an edit meanwhile mixes versions.
    mixed = source_fingerprint(REPOSITORY_ROOT) != fingerprint
    print()
    print(report(rows, checks, rounds_wanted, disk, scratch_description))
    if mixed:
        print("\nWARNING: txregistry's sources changed during the run; its rounds mix versions")
    print(
        f"\nthe client and the four registries share this machine's {os.cpu_count()} CPUs; "
        f"total time {elapsed:.0f} s"
    )
    profiles: dict[str, dict[str, list[tuple[str, float]]]] = {}
    for one in rounds:
        if one.profile is not None:
            profiles[Path(one.profile).stem] = hot_functions(Path(one.profile))
    largest = [one for one in rounds if one.size == sizes[-1] and one.profile is not None]
    if largest:
        hot = profiles[Path(str(largest[0].profile)).stem]
        print(f"\npy-spy ({args.profile_mode}), the proxy, first pull: {largest[0].profile}")
        print("  own time:")
        for function, percent in hot["own"]:
            print(f"    {percent:5.1f}%  {function}")
        print("  txregistry functions, inclusive:")
        for function, percent in hot["inclusive"][:10]:
            print(f"    {percent:5.1f}%  {function}")
    document: dict[str, Any] = {
        "txregistry_version": version,
        "txregistry_sources": fingerprint,
        "sources_changed_during_run": mixed,
        "cached_pulls_per_round": args.cached_pulls,
        "sizes_mib": [size // MIB for size in sizes],
        "scratch": {"folder": str(scratch.parent), "filesystem": filesystem_type(scratch.parent)},
        "disk_write": {
            "size_mib": DISK_WRITE_SIZE // MIB,
            "chunk_mib": DISK_WRITE_CHUNK // MIB,
            "before_rounds": [asdict(one) for one in disk["before the rounds"]],
            "after_rounds": [asdict(one) for one in disk["after"]],
        },
        "rounds_per_size": rounds_wanted,
        "registries": options.describe(),
        "median": rows,
        "targets": checks,
        "distribution_comparison": {
            key: next(row for row in rows if row["size_mib"] == checks["size_mib"])[key]
            for key in (
                "size_mib",
                "first_vs_distribution",
                "cached_vs_distribution",
                "rss_vs_distribution",
            )
        },
        "rounds": [
            {
                **asdict(one),
                "first_ratio": one.first_ratio,
                "cached_ratios": one.cached_ratios,
                "first_vs_distribution": one.first_vs_distribution,
                "cached_vs_distribution": one.cached_vs_distribution,
            }
            for one in rounds
        ],
        "profile_mode": args.profile_mode if args.profile else None,
        "profiles": profiles,
        "seconds": elapsed,
        "machine": machine(),
    }
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    met = all(checks[key]["met"] for key in ("first_ratio", "cached_ratio", "proxy_peak_rss_mb"))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
