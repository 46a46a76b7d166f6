"""
Blob push and pull throughput and memory, txregistry against the reference
(Distribution's C{docker-registry}), in one run on one machine.

For each registry, started fresh on its own free port with its own data
folder: start an upload (C{POST}), send the whole blob as one streamed
C{PATCH}, commit it (C{PUT ?digest=}), then C{GET} it back, hashing what
arrives.  The blob is generated on the fly from a repeating random pattern
and hashed while it is sent, so the benchmark's own memory stays small.
While each phase runs, a thread samples the registry process's resident set
size (C{VmRSS}) every 20 ms; the kernel's high-water mark (C{VmHWM}, reset
before each phase through C{/proc/<pid>/clear_refs}) is reported beside it.

Run: C{.venv/bin/python bench/blob_bench.py [--size-mib 2048] [--runs N]
[--json out.json]}.  Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from txregistry.testing.process import RegistryProcess, base_config

MIB = 1024 * 1024
MB = 1000 * 1000
CHUNK = MIB
PATTERN_SIZE = 4 * MIB
REPOSITORY = "bench/blob"
REGISTRIES = ("txregistry", "reference")


# -- the registry process's memory and CPU -------------------------------------


def _status_kib(pid: int, field_name: str) -> int:
    """One C{kB} field of C{/proc/<pid>/status}, in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(field_name.encode() + b":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """The user and the system CPU time the process used so far."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def _reset_hwm(pid: int) -> bool:
    """Reset the process's C{VmHWM} to its current RSS (Linux >= 4.0)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


class MemorySampler:
    """
    Samples a process's C{VmRSS} every C{interval} seconds from a thread
    while a phase runs; C{peak_kib} is the largest sample.
    """

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, _status_kib(self.pid, "VmRSS"))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, _status_kib(self.pid, "VmRSS"))


@dataclass
class Phase:
    """One push or pull against one registry."""

    seconds: float = 0.0
    mb_per_s: float = 0.0
    peak_rss_mb: float = 0.0
    hwm_mb: float | None = None
    cpu_seconds: float = 0.0
    cpu_user_seconds: float = 0.0
    cpu_system_seconds: float = 0.0
    rss_samples: int = 0


@dataclass
class Run:
    """Everything measured for one registry in one run."""

    registry: str
    size: int
    digest: str = ""
    idle_rss_mb: float = 0.0
    push: Phase = field(default_factory=Phase)
    pull: Phase = field(default_factory=Phase)
    patch_seconds: float = 0.0
    commit_seconds: float = 0.0


class Measure:
    """Times one phase and records the process's memory and CPU during it."""

    def __init__(self, pid: int, phase: Phase, size: int) -> None:
        self.pid = pid
        self.phase = phase
        self.size = size

    def __enter__(self) -> Measure:
        self._hwm_reset = _reset_hwm(self.pid)
        self._cpu = _cpu_seconds(self.pid)
        self._sampler = MemorySampler(self.pid).__enter__()
        self._began = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        elapsed = time.perf_counter() - self._began
        self._sampler.__exit__(*exc_info)
        phase = self.phase
        phase.seconds = elapsed
        phase.mb_per_s = self.size / MB / elapsed if elapsed else 0.0
        phase.peak_rss_mb = self._sampler.peak_kib * 1024 / MB
        phase.rss_samples = self._sampler.samples
        if self._hwm_reset:
            phase.hwm_mb = _status_kib(self.pid, "VmHWM") * 1024 / MB
        user, system = _cpu_seconds(self.pid)
        phase.cpu_user_seconds = user - self._cpu[0]
        phase.cpu_system_seconds = system - self._cpu[1]
        phase.cpu_seconds = phase.cpu_user_seconds + phase.cpu_system_seconds


# -- the client side ---------------------------------------------------------------


class PatternBody:
    """
    C{size} bytes of a repeating random pattern, produced in C{CHUNK}-sized
    pieces and hashed on the way; C{digest} is known once all were produced.
    """

    def __init__(self, size: int, pattern: bytes) -> None:
        self.size = size
        self._pattern = pattern * 2  # any CHUNK-long window is one slice
        self._period = len(pattern)
        self._hasher = hashlib.sha256()
        self.produced = 0

    def __iter__(self) -> Iterator[bytes]:
        while self.produced < self.size:
            start = self.produced % self._period
            length = min(CHUNK, self.size - self.produced, self._period)
            chunk = self._pattern[start : start + length]
            self._hasher.update(chunk)
            self.produced += length
            yield chunk

    @property
    def digest(self) -> str:
        if self.produced != self.size:
            raise RuntimeError("the body was not produced whole")
        return f"sha256:{self._hasher.hexdigest()}"


def _connection(base_url: str) -> http.client.HTTPConnection:
    parts = urlsplit(base_url)
    assert parts.hostname == "127.0.0.1", "the benchmark talks to loopback only"
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)


def _target(base_url: str, location: str) -> str:
    parts = urlsplit(urljoin(base_url + "/", location))
    if parts.hostname not in (None, "127.0.0.1"):
        raise RuntimeError(f"the registry sent us to {location!r}")
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _expect(response: http.client.HTTPResponse, status: int, what: str) -> bytes:
    body = response.read()
    if response.status != status:
        raise RuntimeError(f"{what}: {response.status} {response.reason}: {body[:500]!r}")
    return body


def push(base_url: str, body: PatternBody, chunked: bool, run: Run, pid: int) -> None:
    """POST, one streamed PATCH with the whole blob, PUT ?digest=."""
    connection = _connection(base_url)
    try:
        connection.request("POST", f"/v2/{REPOSITORY}/blobs/uploads/", headers={})
        response = connection.getresponse()
        _expect(response, 202, "starting the upload")
        location = response.getheader("Location") or ""
        with Measure(pid, run.push, body.size):
            headers = {"Content-Type": "application/octet-stream"}
            if not chunked:
                headers["Content-Length"] = str(body.size)
            began = time.perf_counter()
            connection.request(
                "PATCH", _target(base_url, location), body=body, headers=headers,
                encode_chunked=chunked,
            )  # fmt: skip
            response = connection.getresponse()
            _expect(response, 202, "sending the blob")
            run.patch_seconds = time.perf_counter() - began
            location = response.getheader("Location") or location
            target = _target(base_url, location)
            separator = "&" if "?" in target else "?"
            began = time.perf_counter()
            connection.request("PUT", f"{target}{separator}digest={body.digest}")
            response = connection.getresponse()
            _expect(response, 201, "committing the blob")
            run.commit_seconds = time.perf_counter() - began
        if response.getheader("Docker-Content-Digest") != body.digest:
            raise RuntimeError(
                f"committed {response.getheader('Docker-Content-Digest')}, sent {body.digest}"
            )
    finally:
        connection.close()


def pull(base_url: str, digest: str, size: int, run: Run, pid: int) -> None:
    """GET the blob back, hashing it, and check its size and digest."""
    connection = _connection(base_url)
    hasher = hashlib.sha256()
    received = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    try:
        with Measure(pid, run.pull, size):
            connection.request("GET", f"/v2/{REPOSITORY}/blobs/{digest}")
            response = connection.getresponse()
            if response.status != 200:
                raise RuntimeError(f"pulling: {response.status}: {response.read()[:500]!r}")
            while count := response.readinto(buffer):
                hasher.update(view[:count])
                received += count
    finally:
        connection.close()
    if received != size or f"sha256:{hasher.hexdigest()}" != digest:
        raise RuntimeError(f"pulled {received} bytes hashing to sha256:{hasher.hexdigest()}")
    if response.getheader("Docker-Content-Digest") not in (None, digest):
        raise RuntimeError(f"pull answered digest {response.getheader('Docker-Content-Digest')}")


def bench_one(
    registry: str, size: int, pattern: bytes, chunked: bool, scratch: Path, verbose: bool
) -> Run:
    """Start a fresh registry, push, pull, stop it and delete its data."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{registry}-", dir=scratch))
    run = Run(registry, size)
    config = base_config(workdir / "data")
    config["log"] = {"level": "warn", "accesslog": {"disabled": True}}
    process = RegistryProcess(workdir, config, reference=registry == "reference")
    try:
        process.start()
        assert process.process is not None
        pid = process.process.pid
        time.sleep(0.2)
        run.idle_rss_mb = _status_kib(pid, "VmRSS") * 1024 / MB
        body = PatternBody(size, pattern)
        push(process.url, body, chunked, run, pid)
        run.digest = body.digest
        stored = workdir / "data/docker/registry/v2/blobs/sha256"
        stored = stored / run.digest[7:9] / run.digest[7:] / "data"
        if stored.stat().st_size != size:
            raise RuntimeError(f"{stored} holds {stored.stat().st_size} bytes")
        pull(process.url, run.digest, size, run, pid)
    except BaseException:
        if verbose:
            print(process.output()[-4000:], file=sys.stderr)
        raise
    finally:
        process.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return run


# -- reporting ---------------------------------------------------------------------------

METRICS: tuple[tuple[str, Callable[[Run], float]], ...] = (
    ("push MB/s", lambda run: run.push.mb_per_s),
    ("pull MB/s", lambda run: run.pull.mb_per_s),
    ("push peak RSS MB", lambda run: run.push.peak_rss_mb),
    ("pull peak RSS MB", lambda run: run.pull.peak_rss_mb),
    ("idle RSS MB", lambda run: run.idle_rss_mb),
    ("push CPU s", lambda run: run.push.cpu_seconds),
    ("pull CPU s", lambda run: run.pull.cpu_seconds),
)


def summarize(runs: list[Run]) -> dict[str, dict[str, float]]:
    """Medians of every metric, by registry, and ratios txregistry/reference."""
    medians: dict[str, dict[str, float]] = {}
    for registry in REGISTRIES:
        mine = [run for run in runs if run.registry == registry]
        if mine:
            medians[registry] = {
                name: statistics.median(metric(run) for run in mine) for name, metric in METRICS
            }
    if len(medians) == 2:
        medians["ratio"] = {
            name: (
                medians["txregistry"][name] / medians["reference"][name]
                if medians["reference"][name]
                else float("nan")
            )
            for name, _ in METRICS
        }
    return medians


def table(summary: dict[str, dict[str, float]], runs: int, size: int) -> str:
    """The summary as a text table."""
    columns = [column for column in (*REGISTRIES, "ratio") if column in summary]
    heading = "median of " if runs > 1 else ""
    lines = [
        f"blob {size / MIB:.0f} MiB, one streamed PATCH, {heading}{runs} run(s); "
        "MB = 10^6 bytes; ratio = txregistry/reference",
        f"{'':<18}" + "".join(f"{column:>14}" for column in columns),
    ]
    for name, _ in METRICS:
        cells = []
        for column in columns:
            value = summary[column][name]
            cells.append(f"{value:>14.2f}" if column == "ratio" else f"{value:>14.1f}")
        lines.append(f"{name:<18}" + "".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=2048, help="blob size (default 2048)")
    parser.add_argument("--runs", type=int, default=1, help="runs per registry (default 1)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument(
        "--only", choices=REGISTRIES, action="append", help="bench only this registry"
    )
    parser.add_argument(
        "--content-length",
        action="store_true",
        help="send the PATCH with Content-Length instead of chunked transfer encoding",
    )
    parser.add_argument(
        "--scratch",
        type=Path,
        default=None,
        help="where the data folders go (default: a temporary folder in /tmp)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the random pattern")
    args = parser.parse_args(argv)

    size = args.size_mib * MIB
    registries = args.only or list(REGISTRIES)
    if "reference" in registries and shutil.which("docker-registry") is None:
        parser.error("docker-registry is not installed (apt-get install docker-registry)")
    if args.seed is None:
        pattern = os.urandom(PATTERN_SIZE)
    else:
        import random

        pattern = random.Random(args.seed).randbytes(PATTERN_SIZE)
    chunked = not args.content_length

    if args.scratch is not None:
        args.scratch.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="blob-bench-", dir=args.scratch))
    runs: list[Run] = []
    try:
        for index in range(args.runs):
            # Alternate the order so that neither always runs on a cold cache.
            order = registries if index % 2 == 0 else list(reversed(registries))
            for registry in order:
                print(f"run {index + 1}/{args.runs}: {registry} ...", end=" ", flush=True)
                run = bench_one(registry, size, pattern, chunked, scratch, verbose=True)
                runs.append(run)
                print(
                    f"push {run.push.mb_per_s:.0f} MB/s, peak RSS {run.push.peak_rss_mb:.0f} MB;"
                    f" pull {run.pull.mb_per_s:.0f} MB/s, peak RSS {run.pull.peak_rss_mb:.0f} MB",
                    flush=True,
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    summary = summarize(runs)
    print()
    print(table(summary, args.runs, size))
    bar = summary.get("txregistry", {}).get("push peak RSS MB")
    if bar is not None:
        worst = max(
            max(run.push.peak_rss_mb, run.pull.peak_rss_mb)
            for run in runs
            if run.registry == "txregistry"
        )
        verdict = "meets" if worst < 150 else "MISSES"
        print(f"\ntxregistry worst peak RSS {worst:.1f} MB: {verdict} the 150 MB bar")
    if args.json is not None:
        document: dict[str, Any] = {
            "size_bytes": size,
            "transfer": "chunked" if chunked else "content-length",
            "runs": [asdict(run) for run in runs],
            "median": summary,
            "machine": {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "kernel": platform.release(),
            },
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
