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

With C{--storage s3}, both registries keep their blobs in S3 instead: one
moto S3 server (L{S3ServerProcess}) on 127.0.0.1 for the whole run, a bucket
per registry run, redirects disabled so that the blob streams through the
registry; the S3 server's CPU and memory are measured beside the registry's.

Run: C{.venv/bin/python bench/blob_bench.py [--storage s3] [--size-mib N]
[--runs N] [--json out.json]}.  Only 127.0.0.1 is ever contacted.
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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from common import (
    CHUNK,
    MIB,
    REGISTRIES,
    Measure,
    PatternBody,
    Phase,
    RegistryOptions,
    add_registry_options,
    alternated,
    connection,
    expect,
    machine,
    make_pattern,
    registry_options,
    rss_mb,
    source_version,
    start_registry,
    target,
    with_query,
)
from txregistry.testing.s3server import S3ServerProcess

REPOSITORY = "bench/blob"
# Where both registries' S3 drivers put everything, in their bucket.
S3_ROOT = "registry"


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
    # The storage server's figures in each phase (with --storage s3).
    server_push: Phase | None = None
    server_pull: Phase | None = None


@dataclass(frozen=True)
class Processes:
    """The processes a phase measures: the registry, and the storage server if any."""

    registry: int
    storage_server: int | None = None

    @contextmanager
    def measure(self, phase: Phase, server_phase: Phase | None, size: int) -> Iterator[None]:
        """Time a phase, measuring the registry in C{phase}, the server in C{server_phase}."""
        with ExitStack() as stack:
            stack.enter_context(Measure(self.registry, phase, size))
            if self.storage_server is not None and server_phase is not None:
                stack.enter_context(Measure(self.storage_server, server_phase, size))
            yield


# -- where the registries keep blobs ---------------------------------------------------


def blob_data_path(digest: str) -> str:
    """Where both registries keep a blob's bytes, below their storage root."""
    hex_digest = digest.removeprefix("sha256:")
    return f"docker/registry/v2/blobs/sha256/{hex_digest[:2]}/{hex_digest}/data"


class BlobStorage(Protocol):
    """Where the registries of a benchmark keep their blobs."""

    name: str
    rss_bar_mb: float
    server_pid: int | None

    def sections(self, registry: str, workdir: Path) -> dict[str, Any] | None:
        """
        The storage sections of one registry run's config (C{None}: the
        filesystem, in C{workdir}/data).
        """

    def stored_size(self, workdir: Path, digest: str) -> int:
        """The size of the blob C{digest} as the registry run in C{workdir} stored it."""

    def release(self, workdir: Path) -> None:
        """Drop what the registry run in C{workdir} stored outside C{workdir}."""


class FilesystemStorage:
    """Each registry run's own data folder."""

    name = "filesystem"
    rss_bar_mb = 150.0
    server_pid: int | None = None

    def sections(self, registry: str, workdir: Path) -> dict[str, Any] | None:
        return None

    def stored_size(self, workdir: Path, digest: str) -> int:
        return (workdir / "data" / blob_data_path(digest)).stat().st_size

    def release(self, workdir: Path) -> None:
        pass


class S3Storage:
    """
    One S3 server for every registry run, a bucket of its own for each
    run, emptied and deleted after it (moto holds objects in memory and
    temporary files), redirects disabled so the blob streams through the
    registry.
    """

    name = "s3"
    rss_bar_mb = 200.0

    def __init__(self, server: S3ServerProcess) -> None:
        self.server = server
        self.server_pid = server.process.pid if server.process is not None else None
        self._buckets: dict[Path, str] = {}

    def sections(self, registry: str, workdir: Path) -> dict[str, Any] | None:
        bucket = f"{registry}-{len(self._buckets) + 1}"
        self.server.create_bucket(bucket)
        self._buckets[workdir] = bucket
        sections = {
            **self.server.storage_parameters(bucket, f"/{S3_ROOT}"),
            "redirect": {"disable": True},
        }
        if registry == "reference":
            # Distribution 2.8 has no forcepathstyle (it would ignore it): with
            # a regionendpoint, its driver addresses buckets by path anyway.
            del sections["s3"]["forcepathstyle"]
        return sections

    def stored_size(self, workdir: Path, digest: str) -> int:
        key = f"{S3_ROOT}/{blob_data_path(digest)}"
        head = self.server.client().head_object(Bucket=self._buckets[workdir], Key=key)
        return int(head["ContentLength"])

    def release(self, workdir: Path) -> None:
        bucket = self._buckets.get(workdir)
        if bucket is None:
            return
        client = self.server.client(timeout=120)
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        for upload in uploads:
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        keys = self.server.keys(bucket)
        for start in range(0, len(keys), 1000):
            objects = [{"Key": key} for key in keys[start : start + 1000]]
            client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
        client.delete_bucket(Bucket=bucket)


# -- the client side ---------------------------------------------------------------


def push(base_url: str, body: PatternBody, chunked: bool, run: Run, processes: Processes) -> None:
    """POST, one streamed PATCH with the whole blob, PUT ?digest=."""
    client = connection(base_url)
    try:
        client.request("POST", f"/v2/{REPOSITORY}/blobs/uploads/", headers={})
        response = client.getresponse()
        expect(response, 202, "starting the upload")
        location = response.getheader("Location") or ""
        with processes.measure(run.push, run.server_push, body.size):
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


def pull(base_url: str, digest: str, size: int, run: Run, processes: Processes) -> None:
    """GET the blob back, hashing it, and check its size and digest."""
    client = connection(base_url)
    hasher = hashlib.sha256()
    received = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    try:
        with processes.measure(run.pull, run.server_pull, size):
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
    storage: BlobStorage | None = None,
) -> Run:
    """Start a fresh registry, push, pull, stop it and delete its data."""
    storage = storage or FilesystemStorage()
    workdir = Path(tempfile.mkdtemp(prefix=f"{registry}-", dir=scratch))
    run = Run(registry, size)
    if storage.server_pid is not None:
        run.server_push, run.server_pull = Phase(), Phase()
    process = None
    try:
        process = start_registry(registry, workdir, options, storage.sections(registry, workdir))
        processes = Processes(process.pid, storage.server_pid)
        time.sleep(0.2)
        run.idle_rss_mb = rss_mb(process.pid)
        body = PatternBody(size, pattern)
        push(process.url, body, chunked, run, processes)
        run.digest = body.digest
        stored = storage.stored_size(workdir, run.digest)
        if stored != size:
            raise RuntimeError(f"{storage.name} holds {stored} bytes of {run.digest}")
        pull(process.url, run.digest, size, run, processes)
    except BaseException:
        if verbose and process is not None:
            print(process.output()[-4000:], file=sys.stderr)
        raise
    finally:
        if process is not None:
            process.stop()
        storage.release(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
    return run


# -- reporting ---------------------------------------------------------------------------

Metric = tuple[str, Callable[[Run], float]]


def cpu_percent(phase: Phase | None) -> float:
    """The CPU a process used in a phase, in % of one CPU (0 if not measured)."""
    if phase is None or not phase.seconds:
        return 0.0
    return 100 * phase.cpu_seconds / phase.seconds


def server_figures(phase: Phase | None) -> Phase:
    """The storage server's figures of a phase (zeros if not measured)."""
    return phase or Phase()


METRICS: tuple[Metric, ...] = (
    ("push MB/s", lambda run: run.push.mb_per_s),
    ("pull MB/s", lambda run: run.pull.mb_per_s),
    ("commit (PUT) s", lambda run: run.commit_seconds),
    ("push peak RSS MB", lambda run: run.push.peak_rss_mb),
    ("pull peak RSS MB", lambda run: run.pull.peak_rss_mb),
    ("idle RSS MB", lambda run: run.idle_rss_mb),
    ("push CPU s", lambda run: run.push.cpu_seconds),
    ("pull CPU s", lambda run: run.pull.cpu_seconds),
    ("push CPU %", lambda run: cpu_percent(run.push)),
    ("pull CPU %", lambda run: cpu_percent(run.pull)),
)
# The storage server's, when there is one: what each registry costs it.
SERVER_METRICS: tuple[Metric, ...] = (
    ("S3 push CPU s", lambda run: server_figures(run.server_push).cpu_seconds),
    ("S3 pull CPU s", lambda run: server_figures(run.server_pull).cpu_seconds),
    ("S3 push CPU %", lambda run: cpu_percent(run.server_push)),
    ("S3 pull CPU %", lambda run: cpu_percent(run.server_pull)),
    ("S3 push peak RSS MB", lambda run: server_figures(run.server_push).peak_rss_mb),
    ("S3 pull peak RSS MB", lambda run: server_figures(run.server_pull).peak_rss_mb),
)


def metrics_of(runs: list[Run]) -> tuple[Metric, ...]:
    """The metrics the runs have: the storage server's too if it was measured."""
    if any(run.server_push is not None for run in runs):
        return METRICS + SERVER_METRICS
    return METRICS


def summarize(runs: list[Run]) -> dict[str, dict[str, float]]:
    """Medians of every metric, by registry, and ratios txregistry/reference."""
    metrics = metrics_of(runs)
    medians: dict[str, dict[str, float]] = {}
    for registry in REGISTRIES:
        mine = [run for run in runs if run.registry == registry]
        if mine:
            medians[registry] = {
                name: statistics.median(metric(run) for run in mine) for name, metric in metrics
            }
    if len(medians) == 2:
        medians["ratio"] = {
            name: (
                medians["txregistry"][name] / medians["reference"][name]
                if medians["reference"][name]
                else float("nan")
            )
            for name, _ in metrics
        }
    return medians


def table(summary: dict[str, dict[str, float]], runs: int, size: int, storage: str) -> str:
    """The summary as a text table."""
    columns = [column for column in (*REGISTRIES, "ratio") if column in summary]
    names = list(next(iter(summary.values())))
    width = max(len(name) for name in names) + 2
    heading = "median of " if runs > 1 else ""
    lines = [
        f"blob {size / MIB:.0f} MiB on {storage}, one streamed PATCH, {heading}{runs} run(s); "
        "MB = 10^6 bytes; ratio = txregistry/reference",
        f"{'':<{width}}" + "".join(f"{column:>14}" for column in columns),
    ]
    for name in names:
        cells = []
        for column in columns:
            value = summary[column][name]
            cells.append(f"{value:>14.2f}" if column == "ratio" else f"{value:>14.1f}")
        lines.append(f"{name:<{width}}" + "".join(cells))
    return "\n".join(lines)


def describe_run(run: Run) -> str:
    """One run's main figures, on one line."""
    line = (
        f"push {run.push.mb_per_s:.0f} MB/s (commit {run.commit_seconds:.1f} s),"
        f" peak RSS {run.push.peak_rss_mb:.0f} MB;"
        f" pull {run.pull.mb_per_s:.0f} MB/s, peak RSS {run.pull.peak_rss_mb:.0f} MB"
    )
    if run.server_push is not None:
        line += (
            f"; S3 server CPU {cpu_percent(run.server_push):.0f} % in push,"
            f" {cpu_percent(run.server_pull):.0f} % in pull"
        )
    return line


S3_NOTE = """\
Notes on S3: the server is moto, one Python process on this machine (its CPU is
the "S3" rows; 100 % = one CPU). A figure near 100 % means moto, not the
registry, sets the pace. The push includes the commit's server-side copy of the
upload into the blob path (UploadPartCopy in 32 MiB parts, both registries);
moto copies each part by reading the whole source object, so the commit costs
it about (parts x blob size) of reads."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--storage",
        choices=("filesystem", "s3"),
        default="filesystem",
        help="where both registries keep blobs: their data folders, or one moto S3 server "
        "on 127.0.0.1 (default filesystem)",
    )
    parser.add_argument(
        "--size-mib",
        type=int,
        default=None,
        help="blob size (default 2048, 1024 with --storage s3)",
    )
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

    size = (args.size_mib or (1024 if args.storage == "s3" else 2048)) * MIB
    registries = args.only or list(REGISTRIES)
    if "reference" in registries and shutil.which("docker-registry") is None:
        parser.error("docker-registry is not installed (apt-get install docker-registry)")
    pattern = make_pattern(args.seed)
    options = registry_options(args)
    chunked = not args.content_length

    if args.scratch is not None:
        args.scratch.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="blob-bench-", dir=args.scratch))
    version = source_version()
    print(f"txregistry {version}, storage {args.storage}", flush=True)
    runs: list[Run] = []
    try:
        with ExitStack() as stack:
            storage: BlobStorage = FilesystemStorage()
            if args.storage == "s3":
                storage = S3Storage(stack.enter_context(S3ServerProcess(scratch / "s3")))
            for index in range(args.runs):
                order = alternated(registries, index)
                for registry in order:
                    print(f"run {index + 1}/{args.runs}: {registry} ...", end=" ", flush=True)
                    run = bench_one(
                        registry, size, pattern, chunked, scratch, True, options, storage
                    )
                    runs.append(run)
                    print(describe_run(run), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    summary = summarize(runs)
    print()
    print(table(summary, args.runs, size, storage.name))
    if "txregistry" in summary:
        worst = max(
            max(run.push.peak_rss_mb, run.pull.peak_rss_mb)
            for run in runs
            if run.registry == "txregistry"
        )
        verdict = "meets" if worst < storage.rss_bar_mb else "MISSES"
        print(
            f"\ntxregistry worst peak RSS {worst:.1f} MB: {verdict} the"
            f" {storage.rss_bar_mb:.0f} MB bar ({storage.name})"
        )
    if storage.server_pid is not None:
        print(f"\n{S3_NOTE}")
    if args.json is not None:
        document: dict[str, Any] = {
            "txregistry_version": version,
            "storage": args.storage,
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
