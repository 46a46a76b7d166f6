"""
What the benchmarks share: starting a registry for a benchmark (txregistry
or the reference, Distribution's C{docker-registry}), measuring its memory
and CPU during a phase, generating blob bodies from a repeating random
pattern, and talking HTTP to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import platform
import random
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import yaml

from txregistry.testing.process import RegistryProcess, base_config

T = TypeVar("T")

MIB = 1024 * 1024
MB = 1000 * 1000
CHUNK = MIB
PATTERN_SIZE = 4 * MIB
REGISTRIES = ("txregistry", "reference")


def alternated(items: Sequence[T], round_number: int) -> list[T]:
    """
    C{items} in the order of round C{round_number}: as given, then reversed
    (A B, B A, A B, ...), so that neither always runs first (on a cold cache,
    or a machine whose speed drifts: it is shared).
    """
    return list(items) if round_number % 2 == 0 else list(reversed(items))


# -- the registry process's memory and CPU -------------------------------------


def machine() -> dict[str, Any]:
    """What a result file records of the machine it was measured on."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
    }


def status_kib(pid: int, field_name: str) -> int:
    """One C{kB} field of C{/proc/<pid>/status}, in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(field_name.encode() + b":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_tree(pid: int) -> list[int]:
    """C{pid} and its live descendants (for a registry that forks workers)."""
    pids = [pid]
    index = 0
    while index < len(pids):
        parent = pids[index]
        index += 1
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", "rb") as children:
                    pids.extend(int(child) for child in children.read().split())
            except OSError:
                continue
    return pids


def tree_kib(pid: int, field_name: str) -> int:
    """One C{kB} field of C{/proc/<pid>/status}, summed over the process tree."""
    return sum(status_kib(member, field_name) for member in process_tree(pid))


def rss_mb(pid: int) -> float:
    """The current C{VmRSS} of the process tree, in MB (10^6 bytes)."""
    return tree_kib(pid, "VmRSS") * 1024 / MB


def cpu_seconds(pid: int) -> tuple[float, float]:
    """The user and the system CPU time the process used so far."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def tree_cpu_seconds(pid: int) -> tuple[float, float]:
    """
    The user and the system CPU time of the process tree's live members
    (a child that exits meanwhile takes its share with it).
    """
    user = system = 0.0
    for member in process_tree(pid):
        try:
            member_user, member_system = cpu_seconds(member)
        except OSError:
            continue
        user += member_user
        system += member_system
    return user, system


def reset_hwm(pid: int) -> bool:
    """
    Reset the C{VmHWM} of every process of the tree to its current RSS
    (Linux >= 4.0).
    """
    done = False
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/clear_refs", "w") as clear_refs:
                clear_refs.write("5")
            done = True
        except OSError:
            pass
    return done


class MemorySampler:
    """
    Samples a process's C{VmRSS} (summed over its process tree) every
    C{interval} seconds from a thread while a phase runs; C{peak_kib} is
    the largest sample.
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
            self.peak_kib = max(self.peak_kib, tree_kib(self.pid, "VmRSS"))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, tree_kib(self.pid, "VmRSS"))


@dataclass
class Phase:
    """One timed phase against one registry."""

    seconds: float = 0.0
    mb_per_s: float = 0.0
    peak_rss_mb: float = 0.0
    hwm_mb: float | None = None
    cpu_seconds: float = 0.0
    cpu_user_seconds: float = 0.0
    cpu_system_seconds: float = 0.0
    rss_samples: int = 0


class Measure:
    """
    Times one phase and records the registry process's memory (sampled
    C{VmRSS}, and C{VmHWM} reset at the start) and CPU during it, each
    summed over its process tree; C{size} bytes moved give C{mb_per_s}.
    """

    def __init__(self, pid: int, phase: Phase, size: int = 0) -> None:
        self.pid = pid
        self.phase = phase
        self.size = size

    def __enter__(self) -> Measure:
        self._hwm_reset = reset_hwm(self.pid)
        self._cpu = tree_cpu_seconds(self.pid)
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
            phase.hwm_mb = tree_kib(self.pid, "VmHWM") * 1024 / MB
        user, system = tree_cpu_seconds(self.pid)
        phase.cpu_user_seconds = user - self._cpu[0]
        phase.cpu_system_seconds = system - self._cpu[1]
        phase.cpu_seconds = phase.cpu_user_seconds + phase.cpu_system_seconds


# -- blob bodies ------------------------------------------------------------------------


def make_pattern(seed: int | None, size: int = PATTERN_SIZE) -> bytes:
    """C{size} random bytes: from the OS, or from C{seed} for a fixed pattern."""
    if seed is None:
        return os.urandom(size)
    return random.Random(seed).randbytes(size)


class Pattern:
    """
    Random bytes repeated forever: the content of a benchmark blob, which
    can be produced at any offset without holding the blob in memory.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.period = len(data)
        self._doubled = memoryview(data * 2)  # any window of one period is one slice

    def rotated(self, shift: int) -> Pattern:
        """This pattern rotated left by C{shift} bytes: another, distinct pattern."""
        shift %= self.period
        return Pattern(self.data[shift:] + self.data[:shift])

    def slices(self, start: int, length: int, chunk: int = CHUNK) -> Iterator[memoryview]:
        """
        Bytes C{start} to C{start + length} of the repeated pattern, in
        pieces of at most C{chunk} bytes (views: nothing is copied).
        """
        end = start + length
        position = start
        while position < end:
            offset = position % self.period
            size = min(chunk, end - position, self.period)
            yield self._doubled[offset : offset + size]
            position += size

    def digest(self, size: int) -> str:
        """The sha256 digest of the first C{size} bytes."""
        hasher = hashlib.sha256()
        for piece in self.slices(0, size, chunk=self.period):
            hasher.update(piece)
        return f"sha256:{hasher.hexdigest()}"


class PatternBody:
    """
    C{size} bytes of a repeating random pattern, produced in C{CHUNK}-sized
    pieces and hashed on the way; C{digest} is known once all were produced.
    """

    def __init__(self, size: int, pattern: bytes) -> None:
        self.size = size
        self._pattern = Pattern(pattern)
        self._hasher = hashlib.sha256()
        self.produced = 0

    def __iter__(self) -> Iterator[memoryview]:
        for chunk in self._pattern.slices(0, self.size):
            self._hasher.update(chunk)
            self.produced += len(chunk)
            yield chunk

    @property
    def digest(self) -> str:
        if self.produced != self.size:
            raise RuntimeError("the body was not produced whole")
        return f"sha256:{self._hasher.hexdigest()}"


# -- HTTP to 127.0.0.1 ----------------------------------------------------------------------


def connection(base_url: str, timeout: float = 600) -> http.client.HTTPConnection:
    """A connection to the registry at C{base_url}, which must be on 127.0.0.1."""
    parts = urlsplit(base_url)
    assert parts.hostname == "127.0.0.1", "the benchmark talks to loopback only"
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def target(base_url: str, location: str) -> str:
    """The request target (path and query) of a C{Location} the registry sent."""
    parts = urlsplit(urljoin(base_url + "/", location))
    if parts.hostname not in (None, "127.0.0.1"):
        raise RuntimeError(f"the registry sent us to {location!r}")
    return parts.path + (f"?{parts.query}" if parts.query else "")


def with_query(request_target: str, query: str) -> str:
    """C{request_target} with C{query} (C{name=value}) added."""
    return request_target + ("&" if "?" in request_target else "?") + query


def expect(response: http.client.HTTPResponse, status: int, what: str) -> bytes:
    """Read the whole answer; fail unless its status is C{status}."""
    body = response.read()
    if response.status != status:
        raise RuntimeError(f"{what}: {response.status} {response.reason}: {body[:500]!r}")
    return body


# -- registries ------------------------------------------------------------------------------


class BenchRegistry(RegistryProcess):
    """
    A L{RegistryProcess} whose txregistry command line takes extra
    arguments: C{twist_args} go before C{registry} (C{twist}'s own options,
    such as C{--reactor}), C{registry_args} after the C{--config} option
    (options of C{twist registry}).  The reference's command is unchanged.
    """

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any],
        *,
        reference: bool,
        twist_args: Sequence[str] = (),
        registry_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(workdir, config, reference=reference, env=env)
        self.twist_args = list(twist_args)
        self.registry_args = list(registry_args)

    def command(self, config_path: Path | None) -> list[str]:
        command = super().command(config_path)
        if self.reference:
            return command
        index = command.index("registry")
        return [*command[:index], *self.twist_args, *command[index:], *self.registry_args]

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid


def set_dotted(document: dict[str, Any], assignment: str) -> None:
    """
    Apply C{KEY=VALUE} to a config document: C{KEY} is dotted
    (C{http.draintimeout}), C{VALUE} is YAML (C{10s}, C{true}, C{{a: 1}}).
    """
    key, separator, text = assignment.partition("=")
    if not separator or not key:
        raise ValueError(f"{assignment!r} is not KEY=VALUE")
    *parents, leaf = key.split(".")
    node = document
    for name in parents:
        child = node.get(name)
        if not isinstance(child, dict):
            child = node[name] = {}
        node = child
    node[leaf] = yaml.safe_load(text)


@dataclass
class RegistryOptions:
    """
    How the benchmarks start the registries: config assignments for both
    and for txregistry only, and txregistry's extra command-line arguments
    and environment.
    """

    config: Sequence[str] = ()
    txregistry_config: Sequence[str] = ()
    twist_args: str = ""
    txregistry_args: str = ""
    txregistry_env: Sequence[str] = ()

    def describe(self) -> dict[str, Any]:
        """What was asked for, for the JSON file."""
        return {
            "config": list(self.config),
            "txregistry_config": list(self.txregistry_config),
            "twist_args": self.twist_args,
            "txregistry_args": self.txregistry_args,
            "txregistry_env": list(self.txregistry_env),
        }


def bench_config(
    root: Path, assignments: Sequence[str] = (), storage: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """
    The benchmarks' config: filesystem storage under C{root}, or the
    C{storage} sections instead of C{filesystem} (C{{"s3": {...},
    "redirect": {...}}}), log level C{warn}, no access log, then
    C{assignments} (C{KEY=VALUE}).
    """
    config = base_config(root)
    if storage is not None:
        del config["storage"]["filesystem"]
        config["storage"].update(storage)
    config["log"] = {"level": "warn", "accesslog": {"disabled": True}}
    for assignment in assignments:
        set_dotted(config, assignment)
    return config


def start_registry(
    registry: str,
    workdir: Path,
    options: RegistryOptions | None = None,
    storage: Mapping[str, Any] | None = None,
) -> BenchRegistry:
    """
    Start C{registry} (C{"txregistry"} or C{"reference"}) on a free port of
    127.0.0.1 with its data under C{workdir}/data, or in the C{storage}
    sections' driver (see L{bench_config}).
    """
    options = options or RegistryOptions()
    reference = registry == "reference"
    assignments = list(options.config)
    if not reference:
        assignments += options.txregistry_config
    env = None
    if not reference and options.txregistry_env:
        env = dict(item.partition("=")[::2] for item in options.txregistry_env)
    process = BenchRegistry(
        workdir,
        bench_config(workdir / "data", assignments, storage),
        reference=reference,
        twist_args=() if reference else shlex.split(options.twist_args),
        registry_args=() if reference else shlex.split(options.txregistry_args),
        env=env,
    )
    process.start()
    return process


def add_registry_options(parser: argparse.ArgumentParser) -> None:
    """The options that say how the registries are started."""
    group = parser.add_argument_group("how the registries are started")
    group.add_argument(
        "--config",
        dest="config_set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a config key for both registries (dotted key, YAML value; repeatable), "
        "e.g. storage.cache.blobdescriptor=inmemory",
    )
    group.add_argument(
        "--txregistry-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a config key for txregistry only (repeatable)",
    )
    group.add_argument(
        "--txregistry-args",
        default="",
        metavar="ARGS",
        help="extra arguments for 'twist registry', after --config (one string, shell-split)",
    )
    group.add_argument(
        "--twist-args",
        default="",
        metavar="ARGS",
        help="extra arguments for twist itself, before 'registry' (e.g. '--reactor=epoll')",
    )
    group.add_argument(
        "--txregistry-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for txregistry (repeatable)",
    )


def registry_options(args: argparse.Namespace, defaults: Sequence[str] = ()) -> RegistryOptions:
    """
    The L{RegistryOptions} the command line asked for; C{defaults} are
    config assignments for both registries that C{--config} can override.
    """
    for item in [*args.config_set, *args.txregistry_config]:
        if "=" not in item:
            raise SystemExit(f"{item!r} is not KEY=VALUE")
    for item in args.txregistry_env:
        if "=" not in item:
            raise SystemExit(f"{item!r} is not NAME=VALUE")
    return RegistryOptions(
        config=[*defaults, *args.config_set],
        txregistry_config=args.txregistry_config,
        twist_args=args.twist_args,
        txregistry_args=args.txregistry_args,
        txregistry_env=args.txregistry_env,
    )


def tool_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """
    The environment for a client tool (hey, skopeo): no proxy settings (so
    nothing leaves loopback), no C{CONTAINERS_}/C{REGISTRY_} settings, plus
    C{extra}.
    """
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.lower().endswith("_proxy") and not key.startswith(("CONTAINERS_", "REGISTRY_"))
    }
    environment.update({"NO_PROXY": "*", "no_proxy": "*", **extra})
    return environment


def source_version() -> str:
    """
    The txregistry commit being measured, with C{+changes} when files under
    C{txregistry/} or C{twisted/plugins/} differ from it.
    """
    root = Path(__file__).resolve().parent.parent

    def git(*arguments: str) -> str:
        try:
            result = subprocess.run(
                ["git", "-C", str(root), *arguments],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except OSError:
            return ""
        return result.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (
        "+changes" if git("status", "--porcelain", "--", "txregistry", "twisted") else ""
    )
