"""
The registry benchmark of issue 4: txregistry against the reference
(Distribution 2.8's C{docker-registry}) on one workload, in one run, on one
machine.

For each run and each registry (the order alternates between runs), a fresh
registry on its own free port of 127.0.0.1, with its own data folder,
filesystem storage, log level C{warn} and no access log:

 1. pushes a 1 GiB blob twice: as one monolithic C{PUT ?digest=} after the
    C{POST}, and as 16 MiB C{PATCH} chunks (with C{Content-Range}) then an
    empty C{PUT ?digest=}; MB/s of each, and the registry's peak RSS;
 2. pulls the first blob once to warm the page cache (checking its digest),
    then again, timed; MB/s;
 3. pushes a small image (config, one layer, a manifest tagged C{latest})
    and loads C{HEAD}, then C{GET}, of the manifest by tag with C{hey} (32
    connections, 10 s, the C{Accept} list containerd sends); requests/s,
    p50, p99, errors (non-2xx or failed requests);
 4. loads C{GET /v2/} likewise;
 5. pushes 64 distinct 16 MiB blobs, then pulls them at once, one per
    client thread; aggregate MB/s, errors, peak RSS, and the client's own
    CPU use (to show it is not the bottleneck);
 6. C{skopeo copy} of a two-layer ~50 MB image (built once, offline, with
    umoci from random files) from the registry into a fresh C{oci:} folder,
    three times; the median wall time.

It prints the medians over the runs, the ratio txregistry/reference and
the issue's targets, and writes every figure to C{--json}.  Blob contents
are a repeating random pattern produced on the fly: the benchmark never
holds a large blob in memory.  Only 127.0.0.1 is ever contacted.

Run: C{.venv/bin/python bench/registry_bench.py [--quick] [--runs N]
[--json bench/results-registry.json]}.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import (
    CHUNK,
    MB,
    MIB,
    REGISTRIES,
    BenchRegistry,
    Measure,
    Pattern,
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
    tool_environment,
    with_query,
)
from txregistry.registry.manifest_formats import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from txregistry.registry.manifest_formats import DOCKER_MANIFEST_LIST as DOCKER_LIST

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# What containerd (and so docker pull) sends when it resolves a tag.
ACCEPT = ", ".join([DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX, "*/*"])

BLOB_REPOSITORY = "bench/blob"
IMAGE_REPOSITORY = "bench/image"
MANY_REPOSITORY = "bench/many"
SKOPEO_REPOSITORY = "bench/skopeo"
TAG = "latest"

# Config assignments for both registries that --config may override: the
# blob descriptor cache that Distribution's sample config, its Docker image
# and Debian's package all ship with.
DEFAULT_CONFIG = ("storage.cache.blobdescriptor=inmemory",)


@dataclass(frozen=True)
class Workload:
    """The sizes and durations of one benchmark."""

    blob: int = 1024 * MIB
    patch_chunk: int = 16 * MIB
    load_seconds: float = 10.0
    connections: int = 32
    clients: int = 64
    client_blob: int = 16 * MIB
    layer_bytes: int = 25 * MB
    skopeo_pulls: int = 3


FULL = Workload()
QUICK = Workload(
    blob=64 * MIB, load_seconds=2.0, client_blob=2 * MIB, layer_bytes=5 * MB, skopeo_pulls=1
)


# -- results ---------------------------------------------------------------------------------


@dataclass
class Load:
    """One C{hey} load: its figures and the registry's CPU and memory meanwhile."""

    url_path: str = ""
    method: str = "GET"
    requests: int = 0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    error_kinds: dict[str, int] = field(default_factory=dict)
    registry_cpu_percent: float = 0.0
    peak_rss_mb: float = 0.0


@dataclass
class ManyPull:
    """The concurrent pull of many blobs."""

    phase: Phase = field(default_factory=Phase)
    clients: int = 0
    bytes: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    client_cpu_percent: float = 0.0
    registry_cpu_percent: float = 0.0
    slowest_client_s: float = 0.0
    fastest_client_s: float = 0.0


@dataclass
class Run:
    """Everything measured for one registry in one run."""

    registry: str
    index: int
    idle_rss_mb: float = 0.0
    push_put: Phase = field(default_factory=Phase)
    push_patch: Phase = field(default_factory=Phase)
    pull: Phase = field(default_factory=Phase)
    manifest_head: Load = field(default_factory=Load)
    manifest_get: Load = field(default_factory=Load)
    base_get: Load = field(default_factory=Load)
    many_pull: ManyPull = field(default_factory=ManyPull)
    many_push_seconds: float = 0.0
    skopeo_push_seconds: float = 0.0
    skopeo_pull_seconds: list[float] = field(default_factory=list)
    profiles: dict[str, str] = field(default_factory=dict)

    @property
    def push_peak_rss_mb(self) -> float:
        return max(self.push_put.peak_rss_mb, self.push_patch.peak_rss_mb)

    @property
    def skopeo_pull_median_s(self) -> float:
        return statistics.median(self.skopeo_pull_seconds) if self.skopeo_pull_seconds else 0.0


# -- blobs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    """A blob of the benchmark: C{size} bytes of C{pattern}, and their digest."""

    pattern: Pattern
    size: int
    digest: str

    def slices(self, start: int = 0, length: int | None = None) -> Any:
        return self.pattern.slices(start, self.size - start if length is None else length)


def make_blobs(patterns: Sequence[tuple[Pattern, int]]) -> list[Blob]:
    """The blobs of C{patterns} (each with a size), hashed on two threads."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        digests = list(pool.map(lambda item: item[0].digest(item[1]), patterns))
    return [
        Blob(pattern, size, digest)
        for (pattern, size), digest in zip(patterns, digests, strict=True)
    ]


def _start_upload(client: Any, base_url: str, repository: str) -> str:
    client.request("POST", f"/v2/{repository}/blobs/uploads/")
    response = client.getresponse()
    expect(response, 202, "starting an upload")
    return target(base_url, response.getheader("Location") or "")


def _check_committed(response: Any, blob: Blob) -> None:
    expect(response, 201, "committing a blob")
    if response.getheader("Docker-Content-Digest") != blob.digest:
        raise RuntimeError(
            f"committed {response.getheader('Docker-Content-Digest')}, sent {blob.digest}"
        )


def push_put(client: Any, base_url: str, repository: str, blob: Blob) -> None:
    """C{POST}, then the whole blob in one C{PUT ?digest=} (Content-Length)."""
    location = _start_upload(client, base_url, repository)
    client.request(
        "PUT",
        with_query(location, f"digest={blob.digest}"),
        body=blob.slices(),
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)},
    )
    _check_committed(client.getresponse(), blob)


def push_patches(client: Any, base_url: str, repository: str, blob: Blob, chunk: int) -> None:
    """C{POST}, C{PATCH} chunks with C{Content-Range}, then an empty C{PUT ?digest=}."""
    location = _start_upload(client, base_url, repository)
    for start in range(0, blob.size, chunk):
        length = min(chunk, blob.size - start)
        client.request(
            "PATCH",
            location,
            body=blob.slices(start, length),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(length),
                "Content-Range": f"{start}-{start + length - 1}",
            },
        )
        response = client.getresponse()
        expect(response, 202, f"sending bytes {start}-{start + length - 1}")
        location = target(base_url, response.getheader("Location") or location)
    client.request("PUT", with_query(location, f"digest={blob.digest}"))
    _check_committed(client.getresponse(), blob)


def push_small(client: Any, base_url: str, repository: str, data: bytes) -> str:
    """Push a small blob (monolithic); its digest."""
    blob = Blob(Pattern(data), len(data), Pattern(data).digest(len(data)))
    push_put(client, base_url, repository, blob)
    return blob.digest


def pull_blob(base_url: str, repository: str, blob: Blob, check: bool) -> int:
    """
    C{GET} a blob, reading it into a 1 MiB buffer; with C{check}, hash it
    and compare with its digest.  The number of bytes received.
    """
    client = connection(base_url)
    hasher = hashlib.sha256() if check else None
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    received = 0
    try:
        client.request("GET", f"/v2/{repository}/blobs/{blob.digest}")
        response = client.getresponse()
        if response.status != 200:
            raise RuntimeError(f"pulling: {response.status}: {response.read()[:500]!r}")
        while count := response.readinto(buffer):
            if hasher is not None:
                hasher.update(view[:count])
            received += count
    finally:
        client.close()
    if received != blob.size:
        raise RuntimeError(f"pulled {received} of {blob.size} bytes")
    if hasher is not None and f"sha256:{hasher.hexdigest()}" != blob.digest:
        raise RuntimeError(f"pulled a blob hashing to sha256:{hasher.hexdigest()}")
    return received


# -- the manifest -----------------------------------------------------------------------------


def push_image(base_url: str, manifest_type: str) -> str:
    """Push a config, one layer and a manifest tagged C{latest}; its digest."""
    docker = manifest_type == "docker"
    client = connection(base_url)
    try:
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
                "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]},
                "history": [{"created_by": "registry_bench"}],
            }
        ).encode()
        layer = os.urandom(32 * 1024)
        config_digest = push_small(client, base_url, IMAGE_REPOSITORY, config)
        layer_digest = push_small(client, base_url, IMAGE_REPOSITORY, layer)
        media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": media_type,
                "config": {
                    "mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                    "digest": config_digest,
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": DOCKER_LAYER if docker else OCI_LAYER,
                        "digest": layer_digest,
                        "size": len(layer),
                    }
                ],
            },
            indent=3,
        ).encode()
        client.request(
            "PUT",
            f"/v2/{IMAGE_REPOSITORY}/manifests/{TAG}",
            body=manifest,
            headers={"Content-Type": media_type},
        )
        response = client.getresponse()
        expect(response, 201, "pushing the manifest")
        digest = response.getheader("Docker-Content-Digest") or ""
        for method in ("HEAD", "GET"):
            client.request(
                method, f"/v2/{IMAGE_REPOSITORY}/manifests/{TAG}", headers={"Accept": ACCEPT}
            )
            response = client.getresponse()
            body = expect(response, 200, f"{method} of the manifest")
            if response.getheader("Docker-Content-Digest") != digest or (
                method == "GET" and body != manifest
            ):
                raise RuntimeError(f"{method} of the manifest answered another manifest")
        return digest
    finally:
        client.close()


# -- hey ----------------------------------------------------------------------------------------

_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_PERCENTILE = re.compile(r"^\s*(\d+)% in ([\d.]+) secs", re.MULTILINE)
_STATUS = re.compile(r"^\s*\[(\d+)\]\s+(\d+) responses", re.MULTILINE)
_ERROR = re.compile(r"^\s*\[(\d+)\]\s+(.*)$", re.MULTILINE)


def parse_hey(output: str) -> Load:
    """The figures of C{hey}'s summary."""
    load = Load()
    found = _RPS.search(output)
    load.rps = float(found.group(1)) if found else 0.0
    percentiles = {
        int(match.group(1)): float(match.group(2)) for match in _PERCENTILE.finditer(output)
    }
    load.p50_ms = percentiles.get(50, math.nan) * 1000
    load.p99_ms = percentiles.get(99, math.nan) * 1000
    errors_text = output.partition("Error distribution:")[2]
    load.statuses = {match.group(1): int(match.group(2)) for match in _STATUS.finditer(output)}
    for match in _ERROR.finditer(errors_text):
        kind = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", match.group(2).strip())
        kind = re.sub(r'"http://[^"]*"', "URL", kind)
        load.error_kinds[kind] = load.error_kinds.get(kind, 0) + int(match.group(1))
    non_2xx = sum(count for status, count in load.statuses.items() if not status.startswith("2"))
    load.errors = non_2xx + sum(load.error_kinds.values())
    load.requests = sum(load.statuses.values()) + sum(load.error_kinds.values())
    return load


def hey(
    registry: BenchRegistry,
    path: str,
    method: str,
    workload: Workload,
    accept: str | None,
    body: tuple[Path, str] | None = None,
) -> Load:
    """
    Load C{path} with C{hey} for C{workload.load_seconds}; each request
    sends C{body} (a file, and its content type) if given.
    """
    command = [
        shutil.which("hey") or "hey",
        "-z",
        f"{workload.load_seconds:g}s",
        "-c",
        str(workload.connections),
        "-m",
        method,
    ]
    if accept is not None:
        command += ["-A", accept]
    if body is not None:
        command += ["-D", str(body[0]), "-T", body[1]]
    command.append(registry.url + path)
    phase = Phase()
    with Measure(registry.pid, phase):
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=tool_environment({}),
            timeout=workload.load_seconds + 120,
            check=False,
        )
    if result.returncode != 0 or "Requests/sec" not in result.stdout:
        raise RuntimeError(f"hey failed ({result.returncode}): {result.stdout}{result.stderr}")
    load = parse_hey(result.stdout)
    load.url_path = path
    load.method = method
    load.registry_cpu_percent = 100 * phase.cpu_seconds / phase.seconds
    load.peak_rss_mb = phase.peak_rss_mb
    return load


# -- many clients ---------------------------------------------------------------------------


def many_pull(base_url: str, blobs: Sequence[Blob], pid: int) -> ManyPull:
    """
    One thread per blob, each on its own connection (opened first), all
    released at once to C{GET} their blob; the phase ends when the last
    one has its last byte.
    """
    result = ManyPull(clients=len(blobs))
    barrier = threading.Barrier(len(blobs) + 1)
    outcomes: list[tuple[str, int, float]] = [("not run", 0, 0.0)] * len(blobs)
    began = 0.0

    def client_thread(index: int) -> None:
        blob = blobs[index]
        client = connection(base_url, timeout=300)
        buffer = bytearray(CHUNK)
        received = 0
        outcome = "ok"
        try:
            client.connect()
        except OSError as error:
            outcome = f"connect: {type(error).__name__}"
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        try:
            if outcome == "ok":
                client.request("GET", f"/v2/{MANY_REPOSITORY}/blobs/{blob.digest}")
                response = client.getresponse()
                if response.status != 200:
                    response.read()
                    outcome = f"status {response.status}"
                else:
                    while count := response.readinto(buffer):
                        received += count
                    if received != blob.size:
                        outcome = "short body"
                    elif response.getheader("Docker-Content-Digest") not in (None, blob.digest):
                        outcome = "wrong digest"
        except Exception as error:
            outcome = f"{type(error).__name__}: {error}"[:200]
        finally:
            client.close()
        outcomes[index] = (outcome, received, time.perf_counter() - began)

    threads = [
        threading.Thread(target=client_thread, args=(index,), daemon=True)
        for index in range(len(blobs))
    ]
    for thread in threads:
        thread.start()
    total = sum(blob.size for blob in blobs)
    with Measure(pid, result.phase, total):
        client_times = os.times()
        began = time.perf_counter()
        barrier.wait()
        for thread in threads:
            thread.join()
        client_after = os.times()
    elapsed = result.phase.seconds
    client_cpu = (client_after.user - client_times.user) + (
        client_after.system - client_times.system
    )
    result.client_cpu_percent = 100 * client_cpu / elapsed if elapsed else 0.0
    result.registry_cpu_percent = 100 * result.phase.cpu_seconds / elapsed if elapsed else 0.0
    result.bytes = sum(received for _, received, _ in outcomes)
    kinds = Counter(outcome for outcome, _, _ in outcomes if outcome != "ok")
    result.errors = sum(kinds.values())
    result.error_kinds = dict(kinds)
    durations = [seconds for _, _, seconds in outcomes]
    result.slowest_client_s = max(durations)
    result.fastest_client_s = min(durations)
    # Only what arrived counts towards the throughput.
    result.phase.mb_per_s = result.bytes / MB / elapsed if elapsed else 0.0
    return result


# -- skopeo and umoci ---------------------------------------------------------------------------


class Skopeo:
    """
    skopeo with a configuration of its own under C{folder}: an
    accept-anything policy, a registries.conf with no search registries, no
    auth, no proxy.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        for name in ("home", "tmp"):
            (folder / name).mkdir(parents=True, exist_ok=True)
        self.policy = folder / "policy.json"
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.registries_conf = folder / "registries.conf"
        self.registries_conf.write_text(
            'unqualified-search-registries = []\nshort-name-mode = "disabled"\n'
        )
        self.auth = folder / "auth.json"
        self.auth.write_text("{}")

    def copy(self, source: str, destination: str, *options: str) -> float:
        """C{skopeo copy}; its wall time in seconds."""
        command = [
            shutil.which("skopeo") or "skopeo",
            "--policy",
            str(self.policy),
            "--registries-conf",
            str(self.registries_conf),
            "copy",
            "--quiet",
            *options,
            source,
            destination,
        ]
        environment = tool_environment(
            {
                "HOME": str(self.folder / "home"),
                "TMPDIR": str(self.folder / "tmp"),
                "REGISTRY_AUTH_FILE": str(self.auth),
            }
        )
        began = time.perf_counter()
        result = subprocess.run(
            command, capture_output=True, text=True, env=environment, timeout=600, check=False
        )
        elapsed = time.perf_counter() - began
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stdout}{result.stderr}")
        return elapsed


def build_image(folder: Path, layer_bytes: int, layers: int = 2) -> str:
    """
    An OCI layout at C{folder} holding C{bench:latest}, C{layers} layers of
    one random (incompressible) file of C{layer_bytes} each, built with
    umoci; the C{oci:} reference of the image.
    """
    umoci = shutil.which("umoci")
    if umoci is None:
        raise RuntimeError("umoci is not installed (apt-get install umoci)")
    layout = folder / "layout"
    image = f"{layout}:{TAG}"
    subprocess.run([umoci, "init", "--layout", str(layout)], check=True)
    subprocess.run([umoci, "new", "--image", image], check=True)
    for index in range(layers):
        source = folder / f"layer{index}"
        source.mkdir()
        with open(source / "data.bin", "wb") as file:
            remaining = layer_bytes
            while remaining:
                piece = os.urandom(min(remaining, 4 * MIB))
                file.write(piece)
                remaining -= len(piece)
        subprocess.run(
            [umoci, "insert", "--image", image, str(source), f"/data{index}"], check=True
        )
        shutil.rmtree(source)
    subprocess.run([umoci, "gc", "--layout", str(layout)], check=True)
    return f"oci:{image}"


# -- profiling -----------------------------------------------------------------------------------


class Profile:
    """
    C{py-spy record} of a process (and its children) while a phase runs,
    in py-spy's raw (collapsed stacks) format, by function.

    @param mode: C{"gil"}: only samples of threads holding the GIL, i.e.
        where Python spends CPU, on any thread (py-spy pauses the process
        for each sample); C{"wall"}: every thread that is not idle, without
        pausing the process (C{--nonblocking}: py-spy then tells idle
        threads less well, so pool workers waiting for work still show as
        C{Condition.wait}, left out of the tables below), with thread ids.
    """

    def __init__(self, pid: int, output: Path | None, mode: str = "gil") -> None:
        self.pid = pid
        self.output = output
        self.mode = mode
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profile:
        if self.output is None:
            return self
        py_spy = Path(sys.executable).parent / "py-spy"
        mode_flags = ["--gil"] if self.mode == "gil" else ["--nonblocking", "--threads"]
        self._process = subprocess.Popen(
            [
                str(py_spy if py_spy.exists() else "py-spy"),
                "record",
                "--pid",
                str(self.pid),
                "--subprocesses",
                *mode_flags,
                "--nolineno",
                "--format",
                "raw",
                "--rate",
                "200",
                "--output",
                str(self.output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # attached
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


# Leaves that mean a thread waits for work: left out of the tables.
IDLE_LEAVES = ("Condition.wait (threading.py)",)


def _pseudo_frame(frame: str) -> bool:
    return frame.startswith(("process ", "thread ("))


def hot_functions(raw: Path, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """
    From a py-spy raw file: the functions with the most samples of their
    own (C{own}), and the txregistry functions with the most samples
    below them (C{inclusive}), each in percent of the non-idle samples.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [frame for frame in stack.split(";") if not _pseudo_frame(frame)]
        if not frames or frames[-1] in IDLE_LEAVES:
            continue
        count = int(count_text)
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if "(txregistry/" in frame:
                inclusive[frame] += count
    if not total:
        return {"own": [], "inclusive": []}
    return {
        "own": [(name, 100 * count / total) for name, count in own.most_common(top)],
        "inclusive": [(name, 100 * count / total) for name, count in inclusive.most_common(top)],
    }


# -- one registry in one run ------------------------------------------------------------------


@dataclass
class Inputs:
    """What every run uses: blobs, the image to copy, tools' folders."""

    workload: Workload
    put_blob: Blob
    patch_blob: Blob
    client_blobs: list[Blob]
    image: str
    image_bytes: int
    skopeo: Skopeo
    manifest_type: str
    options: RegistryOptions
    profile: Path | None
    profile_mode: str = "gil"


def bench_one(registry: str, index: int, inputs: Inputs, scratch: Path) -> Run:
    """Start a fresh registry, run the whole workload, stop it and delete its data."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{registry}-", dir=scratch))
    run = Run(registry, index)
    workload = inputs.workload
    process: BenchRegistry | None = None

    def step(text: str) -> None:
        print(f"  {registry}: {text}", flush=True)

    try:
        process = start_registry(registry, workdir, inputs.options)
        url, pid = process.url, process.pid
        time.sleep(0.2)
        run.idle_rss_mb = rss_mb(pid)

        step(f"push {inputs.put_blob.size / MIB:.0f} MiB, monolithic PUT")
        client = connection(url)
        try:
            with Measure(pid, run.push_put, inputs.put_blob.size):
                push_put(client, url, BLOB_REPOSITORY, inputs.put_blob)
            step(f"push {inputs.patch_blob.size / MIB:.0f} MiB, PATCH chunks")
            with Measure(pid, run.push_patch, inputs.patch_blob.size):
                push_patches(client, url, BLOB_REPOSITORY, inputs.patch_blob, workload.patch_chunk)
        finally:
            client.close()

        step("pull (one warm-up read, checked, then one timed)")
        pull_blob(url, BLOB_REPOSITORY, inputs.put_blob, check=True)
        with Measure(pid, run.pull, inputs.put_blob.size):
            pull_blob(url, BLOB_REPOSITORY, inputs.put_blob, check=False)

        push_image(url, inputs.manifest_type)
        manifest_path = f"/v2/{IMAGE_REPOSITORY}/manifests/{TAG}"
        profile = inputs.profile if registry == "txregistry" else None
        loads: list[tuple[str, str, str, str | None]] = [
            ("manifest_head", manifest_path, "HEAD", ACCEPT),
            ("manifest_get", manifest_path, "GET", ACCEPT),
            ("base_get", "/v2/", "GET", None),
        ]
        for name, path, method, accept in loads:
            step(f"hey {method} {path}, {workload.connections} connections")
            output = profile / f"{name}-run{index + 1}.txt" if profile else None
            with Profile(pid, output, inputs.profile_mode):
                setattr(run, name, hey(process, path, method, workload, accept))
            if output is not None:
                run.profiles[name] = str(output)

        step(f"push {workload.clients} blobs of {workload.client_blob / MIB:.0f} MiB")
        began = time.perf_counter()
        client = connection(url)
        try:
            for blob in inputs.client_blobs:
                push_put(client, url, MANY_REPOSITORY, blob)
        finally:
            client.close()
        run.many_push_seconds = time.perf_counter() - began

        step(f"{workload.clients} clients pull at once")
        output = profile / f"many_pull-run{index + 1}.txt" if profile else None
        with Profile(pid, output, inputs.profile_mode):
            run.many_pull = many_pull(url, inputs.client_blobs, pid)
        if output is not None:
            run.profiles["many_pull"] = str(output)

        step(f"skopeo copy: push, then {workload.skopeo_pulls} pull(s)")
        remote = f"docker://127.0.0.1:{process.port}/{SKOPEO_REPOSITORY}:{TAG}"
        run.skopeo_push_seconds = inputs.skopeo.copy(
            inputs.image, remote, "--dest-tls-verify=false"
        )
        for attempt in range(workload.skopeo_pulls):
            destination = workdir / f"pulled-{attempt}"
            run.skopeo_pull_seconds.append(
                inputs.skopeo.copy(remote, f"oci:{destination}:{TAG}", "--src-tls-verify=false")
            )
            pulled = sum(path.stat().st_size for path in destination.rglob("*") if path.is_file())
            if pulled < inputs.image_bytes:
                raise RuntimeError(f"skopeo pulled {pulled} bytes of {inputs.image_bytes}")
            shutil.rmtree(destination, ignore_errors=True)
    except BaseException:
        if process is not None:
            print(process.output()[-4000:], file=sys.stderr)
        raise
    finally:
        if process is not None:
            process.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return run


# -- reporting --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """
    One line of the table.

    @ivar target: C{(">=", 1.5)}: the ratio must be at least 1.5; C{("<=",
        1.0)}: at most 1.0; C{("tx<=", 150)}: txregistry's own figure
        must be at most 150 in every run; C{("tx=", 0)}: txregistry's
        figure must be 0 in every run.
    @ivar precision: decimals shown.
    """

    key: str
    label: str
    value: Callable[[Run], float]
    target: tuple[str, float] | None = None
    precision: int = 1


def _load(name: str, field_name: str) -> Callable[[Run], float]:
    return lambda run: float(getattr(getattr(run, name), field_name))


METRICS: tuple[Metric, ...] = (
    Metric("push_put_mb_s", "blob push, 1 PUT, MB/s", lambda r: r.push_put.mb_per_s, (">=", 1.5)),
    Metric(
        "push_patch_mb_s", "blob push, PATCHes, MB/s", lambda r: r.push_patch.mb_per_s, (">=", 1.5)
    ),
    Metric("pull_mb_s", "blob pull, MB/s", lambda r: r.pull.mb_per_s, (">=", 1.0)),
    Metric("push_peak_rss_mb", "push peak RSS, MB", lambda r: r.push_peak_rss_mb, ("tx<=", 150)),
    Metric("manifest_head_rps", "manifest HEAD, req/s", _load("manifest_head", "rps"), (">=", 3.0)),
    Metric(
        "manifest_head_p50_ms", "manifest HEAD p50, ms", _load("manifest_head", "p50_ms"), None, 2
    ),
    Metric(
        "manifest_head_p99_ms",
        "manifest HEAD p99, ms",
        _load("manifest_head", "p99_ms"),
        ("<=", 1.0),
        2,
    ),
    Metric(
        "manifest_head_errors", "manifest HEAD errors", _load("manifest_head", "errors"), None, 0
    ),
    Metric(
        "manifest_head_cpu",
        "  registry CPU %",
        _load("manifest_head", "registry_cpu_percent"),
        None,
        0,
    ),
    Metric("manifest_get_rps", "manifest GET, req/s", _load("manifest_get", "rps"), (">=", 3.0)),
    Metric("manifest_get_p50_ms", "manifest GET p50, ms", _load("manifest_get", "p50_ms"), None, 2),
    Metric(
        "manifest_get_p99_ms",
        "manifest GET p99, ms",
        _load("manifest_get", "p99_ms"),
        ("<=", 1.0),
        2,
    ),
    Metric("manifest_get_errors", "manifest GET errors", _load("manifest_get", "errors"), None, 0),
    Metric(
        "manifest_get_cpu",
        "  registry CPU %",
        _load("manifest_get", "registry_cpu_percent"),
        None,
        0,
    ),
    Metric("base_get_rps", "GET /v2/, req/s", _load("base_get", "rps")),
    Metric("base_get_p50_ms", "GET /v2/ p50, ms", _load("base_get", "p50_ms"), None, 2),
    Metric("base_get_p99_ms", "GET /v2/ p99, ms", _load("base_get", "p99_ms"), None, 2),
    Metric("base_get_errors", "GET /v2/ errors", _load("base_get", "errors"), None, 0),
    Metric("base_get_cpu", "  registry CPU %", _load("base_get", "registry_cpu_percent"), None, 0),
    Metric(
        "many_pull_mb_s", "N-client pull, MB/s", lambda r: r.many_pull.phase.mb_per_s, (">=", 1.0)
    ),
    Metric("many_pull_errors", "N-client pull errors", lambda r: r.many_pull.errors, ("tx=", 0), 0),
    Metric(
        "many_pull_peak_rss_mb",
        "N-client pull peak RSS, MB",
        lambda r: r.many_pull.phase.peak_rss_mb,
    ),
    Metric(
        "many_pull_client_cpu", "  client CPU %", lambda r: r.many_pull.client_cpu_percent, None, 0
    ),
    Metric(
        "many_pull_registry_cpu",
        "  registry CPU %",
        lambda r: r.many_pull.registry_cpu_percent,
        None,
        0,
    ),
    Metric("skopeo_pull_s", "skopeo pull, s", lambda r: r.skopeo_pull_median_s, ("<=", 1.0), 2),
    Metric("skopeo_push_s", "skopeo push, s", lambda r: r.skopeo_push_seconds, None, 2),
    Metric("idle_rss_mb", "idle RSS, MB", lambda r: r.idle_rss_mb),
)


def summarize(runs: list[Run]) -> dict[str, dict[str, float]]:
    """Medians of every metric, by registry, and the ratios txregistry/reference."""
    summary: dict[str, dict[str, float]] = {}
    for registry in REGISTRIES:
        mine = [run for run in runs if run.registry == registry]
        if mine:
            summary[registry] = {
                metric.key: statistics.median(metric.value(run) for run in mine)
                for metric in METRICS
            }
    if len(summary) == 2:
        summary["ratio"] = {
            metric.key: (
                summary["txregistry"][metric.key] / summary["reference"][metric.key]
                if summary["reference"][metric.key]
                else math.nan
            )
            for metric in METRICS
        }
    return summary


def verdicts(summary: dict[str, dict[str, float]], runs: list[Run]) -> dict[str, dict[str, Any]]:
    """Each target: what it asks, and whether it is met (None: cannot tell)."""
    result: dict[str, dict[str, Any]] = {}
    tx = summary.get("txregistry", {})
    ratio = summary.get("ratio", {})
    for metric in METRICS:
        if metric.target is None:
            continue
        kind, bound = metric.target
        met: bool | None = None
        if kind == ">=":
            text = f"ratio >= {bound:.1f}"
            value = ratio.get(metric.key)
            met = None if value is None or math.isnan(value) else value >= bound
        elif kind == "<=":
            text = f"ratio <= {bound:.1f}"
            value = ratio.get(metric.key)
            met = None if value is None or math.isnan(value) else value <= bound
        elif kind == "tx<=":
            text = f"tx <= {bound:g} (all runs)"
            # The worst run, not the median: a bar on memory.
            values = [metric.value(run) for run in runs if run.registry == "txregistry"]
            value = max(values) if values else None
            met = None if value is None else value <= bound
        else:
            text = f"tx = {bound:g} (all runs)"
            values = [metric.value(run) for run in runs if run.registry == "txregistry"]
            value = max(values) if values else None
            met = None if value is None else value == bound
        result[metric.key] = {"target": text, "value": value, "met": met}
    # The manifest targets also ask that no request fails.
    for name in ("manifest_head", "manifest_get"):
        errors = tx.get(f"{name}_errors")
        rps = result.get(f"{name}_rps")
        if rps is not None and errors:
            rps["met"] = False
            rps["target"] += " (and no errors)"
    return result


def table(
    summary: dict[str, dict[str, float]],
    checks: dict[str, dict[str, Any]],
    runs: int,
    workload: Workload,
) -> str:
    """The summary as a text table."""
    columns = [column for column in (*REGISTRIES, "ratio") if column in summary]
    heading = f"median of {runs} runs" if runs > 1 else "1 run"
    lines = [
        f"{heading}; blob {workload.blob / MIB:.0f} MiB, PATCH chunks "
        f"{workload.patch_chunk / MIB:.0f} MiB; loads {workload.load_seconds:g} s at "
        f"{workload.connections} connections; N = {workload.clients} clients x "
        f"{workload.client_blob / MIB:.0f} MiB; MB = 10^6 bytes; ratio = txregistry/reference",
        f"{'':<28}" + "".join(f"{column:>12}" for column in columns) + f"  {'target':<22}result",
    ]
    for metric in METRICS:
        cells = []
        for column in columns:
            value = summary[column][metric.key]
            if column == "ratio":
                cells.append(f"{'-':>12}" if math.isnan(value) else f"{value:>12.2f}")
            else:
                cells.append(f"{value:>12.{metric.precision}f}")
        check = checks.get(metric.key)
        verdict = ""
        if check is not None:
            met = check["met"]
            verdict = f"  {check['target']:<22}" + (
                "n/a" if met is None else "PASS" if met else "FAIL"
            )
        lines.append(f"{metric.label:<28}" + "".join(cells) + verdict)
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 64 MiB blob, 2 s loads, 2 MiB client blobs, 1 run (under a minute)",
    )
    parser.add_argument("--runs", type=int, default=None, help="runs per registry (default 3)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument(
        "--only", choices=REGISTRIES, action="append", help="bench only this registry"
    )
    parser.add_argument("--blob-mib", type=int, help="size of the pushed and pulled blob")
    parser.add_argument("--load-seconds", type=float, help="duration of each hey load")
    parser.add_argument("--connections", type=int, help="hey's concurrent connections")
    parser.add_argument("--clients", type=int, help="clients of the concurrent pull")
    parser.add_argument(
        "--manifest-type",
        choices=("oci", "docker"),
        default="oci",
        help="the media type of the loaded manifest",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy record txregistry during the hey loads and the concurrent pull, into DIR "
        "(raw collapsed stacks), and print the top functions; this slows it down",
    )
    parser.add_argument(
        "--profile-mode",
        choices=("gil", "wall"),
        default="gil",
        help="gil: samples of threads holding the GIL (where Python spends CPU); "
        "wall: every busy thread, also in system calls, without pausing the process",
    )
    parser.add_argument(
        "--scratch", type=Path, default=None, help="where data folders go (default: /tmp)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the random pattern")
    add_registry_options(parser)
    args = parser.parse_args(argv)

    workload = QUICK if args.quick else FULL
    overrides: dict[str, Any] = {}
    if args.blob_mib:
        overrides["blob"] = args.blob_mib * MIB
    if args.load_seconds:
        overrides["load_seconds"] = args.load_seconds
    if args.connections:
        overrides["connections"] = args.connections
    if args.clients:
        overrides["clients"] = args.clients
    workload = Workload(**{**asdict(workload), **overrides})
    runs_wanted = args.runs or (1 if args.quick else 3)
    registries = args.only or list(REGISTRIES)
    for tool, package in (("hey", "hey"), ("skopeo", "skopeo"), ("umoci", "umoci")):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (apt-get install {package})")
    if "reference" in registries and shutil.which("docker-registry") is None:
        parser.error("docker-registry is not installed (apt-get install docker-registry)")
    options = registry_options(args, DEFAULT_CONFIG)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)

    if args.scratch is not None:
        args.scratch.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="registry-bench-", dir=args.scratch))
    runs: list[Run] = []
    began = time.perf_counter()
    version = source_version()
    print(f"txregistry at {version}; {options.describe()}", flush=True)
    try:
        print("preparing: hashing the blobs, building the image with umoci", flush=True)
        pattern = Pattern(make_pattern(args.seed))
        specs = [(pattern, workload.blob), (pattern.rotated(1), workload.blob)]
        specs += [(pattern.rotated(2 + i), workload.client_blob) for i in range(workload.clients)]
        blobs = make_blobs(specs)
        image_folder = scratch / "image"
        image_folder.mkdir()
        inputs = Inputs(
            workload=workload,
            put_blob=blobs[0],
            patch_blob=blobs[1],
            client_blobs=blobs[2:],
            image=build_image(image_folder, workload.layer_bytes),
            image_bytes=2 * workload.layer_bytes,
            skopeo=Skopeo(scratch / "skopeo"),
            manifest_type=args.manifest_type,
            options=options,
            profile=args.profile,
            profile_mode=args.profile_mode,
        )
        for index in range(runs_wanted):
            order = alternated(registries, index)
            for registry in order:
                print(f"run {index + 1}/{runs_wanted}: {registry}", flush=True)
                run = bench_one(registry, index, inputs, scratch)
                runs.append(run)
                print(
                    f"  {registry}: push {run.push_put.mb_per_s:.0f}/"
                    f"{run.push_patch.mb_per_s:.0f} MB/s (PUT/PATCHes), "
                    f"pull {run.pull.mb_per_s:.0f} MB/s, "
                    f"HEAD {run.manifest_head.rps:.0f} req/s, GET {run.manifest_get.rps:.0f} "
                    f"req/s, /v2/ {run.base_get.rps:.0f} req/s, "
                    f"{workload.clients}-client pull {run.many_pull.phase.mb_per_s:.0f} MB/s "
                    f"({run.many_pull.errors} errors), skopeo pull "
                    f"{run.skopeo_pull_median_s:.2f} s",
                    flush=True,
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    summary = summarize(runs)
    checks = verdicts(summary, runs)
    print()
    print(table(summary, checks, runs_wanted, workload))
    print(
        f"\nhey, the clients and both registries share this machine's {os.cpu_count()} CPUs; "
        f"total time {time.perf_counter() - began:.0f} s"
    )
    profiles: dict[str, dict[str, list[tuple[str, float]]]] = {}
    for run in runs:
        for name, path in run.profiles.items():
            hot = hot_functions(Path(path))
            profiles[f"{name}-run{run.index + 1}"] = hot
            print(
                f"\npy-spy ({args.profile_mode}), txregistry, {name}, run {run.index + 1}: {path}"
            )
            print("  own time:")
            for function, percent in hot["own"]:
                print(f"    {percent:5.1f}%  {function}")
            print("  txregistry functions, inclusive:")
            for function, percent in hot["inclusive"][:8]:
                print(f"    {percent:5.1f}%  {function}")
    if args.json is not None:
        document: dict[str, Any] = {
            "txregistry_version": version,
            "workload": asdict(workload),
            "runs_per_registry": runs_wanted,
            "manifest_type": args.manifest_type,
            "accept": ACCEPT,
            "registries": options.describe(),
            "median": summary,
            "targets": checks,
            "runs": [{**asdict(run), "push_peak_rss_mb": run.push_peak_rss_mb} for run in runs],
            "profile_mode": args.profile_mode if args.profile else None,
            "profiles": profiles,
            "machine": machine(),
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
