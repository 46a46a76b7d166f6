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
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import (
    CHUNK,
    MIB,
    REGISTRIES,
    Measure,
    PatternBody,
    Phase,
    RegistryOptions,
    add_registry_options,
    connection,
    expect,
    machine,
    make_pattern,
    registry_options,
    rss_mb,
    start_registry,
    target,
    with_query,
)

REPOSITORY = "bench/blob"


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


# -- the client side ---------------------------------------------------------------


def push(base_url: str, body: PatternBody, chunked: bool, run: Run, pid: int) -> None:
    """POST, one streamed PATCH with the whole blob, PUT ?digest=."""
    client = connection(base_url)
    try:
        client.request("POST", f"/v2/{REPOSITORY}/blobs/uploads/", headers={})
        response = client.getresponse()
        expect(response, 202, "starting the upload")
        location = response.getheader("Location") or ""
        with Measure(pid, run.push, body.size):
            headers = {"Content-Type": "application/octet-stream"}
            if not chunked:
                headers["Content-Length"] = str(body.size)
            began = time.perf_counter()
            client.request(
                "PATCH", target(base_url, location), body=body, headers=headers,
                encode_chunked=chunked,
            )  # fmt: skip
            response = client.getresponse()
            expect(response, 202, "sending the blob")
            run.patch_seconds = time.perf_counter() - began
            location = response.getheader("Location") or location
            began = time.perf_counter()
            client.request("PUT", with_query(target(base_url, location), f"digest={body.digest}"))
            response = client.getresponse()
            expect(response, 201, "committing the blob")
            run.commit_seconds = time.perf_counter() - began
        if response.getheader("Docker-Content-Digest") != body.digest:
            raise RuntimeError(
                f"committed {response.getheader('Docker-Content-Digest')}, sent {body.digest}"
            )
    finally:
        client.close()


def pull(base_url: str, digest: str, size: int, run: Run, pid: int) -> None:
    """GET the blob back, hashing it, and check its size and digest."""
    client = connection(base_url)
    hasher = hashlib.sha256()
    received = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    try:
        with Measure(pid, run.pull, size):
            client.request("GET", f"/v2/{REPOSITORY}/blobs/{digest}")
            response = client.getresponse()
            if response.status != 200:
                raise RuntimeError(f"pulling: {response.status}: {response.read()[:500]!r}")
            while count := response.readinto(buffer):
                hasher.update(view[:count])
                received += count
    finally:
        client.close()
    if received != size or f"sha256:{hasher.hexdigest()}" != digest:
        raise RuntimeError(f"pulled {received} bytes hashing to sha256:{hasher.hexdigest()}")
    if response.getheader("Docker-Content-Digest") not in (None, digest):
        raise RuntimeError(f"pull answered digest {response.getheader('Docker-Content-Digest')}")


def bench_one(
    registry: str,
    size: int,
    pattern: bytes,
    chunked: bool,
    scratch: Path,
    verbose: bool,
    options: RegistryOptions | None = None,
) -> Run:
    """Start a fresh registry, push, pull, stop it and delete its data."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{registry}-", dir=scratch))
    run = Run(registry, size)
    process = None
    try:
        process = start_registry(registry, workdir, options)
        pid = process.pid
        time.sleep(0.2)
        run.idle_rss_mb = rss_mb(pid)
        body = PatternBody(size, pattern)
        push(process.url, body, chunked, run, pid)
        run.digest = body.digest
        stored = workdir / "data/docker/registry/v2/blobs/sha256"
        stored = stored / run.digest[7:9] / run.digest[7:] / "data"
        if stored.stat().st_size != size:
            raise RuntimeError(f"{stored} holds {stored.stat().st_size} bytes")
        pull(process.url, run.digest, size, run, pid)
    except BaseException:
        if verbose and process is not None:
            print(process.output()[-4000:], file=sys.stderr)
        raise
    finally:
        if process is not None:
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
    add_registry_options(parser)
    args = parser.parse_args(argv)

    size = args.size_mib * MIB
    registries = args.only or list(REGISTRIES)
    if "reference" in registries and shutil.which("docker-registry") is None:
        parser.error("docker-registry is not installed (apt-get install docker-registry)")
    pattern = make_pattern(args.seed)
    options = registry_options(args)
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
                run = bench_one(
                    registry, size, pattern, chunked, scratch, verbose=True, options=options
                )
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
            "registries": options.describe(),
            "machine": machine(),
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
