"""
A soak test: mixed load at a fixed rate against a registry it starts, for
minutes, watching the process's memory and open files:

    .venv/bin/python scripts/soak.py --minutes 10 [--rate 20] [--seed 1]

Every 10 s it samples the registry's RSS (C{/proc/PID/status}) and open
file descriptors (C{/proc/PID/fd}).  At the end it reports RSS growth after
a one-minute warm-up (target: under 10 %), the descriptor trend (target: no
more than 10 above the count after warm-up), and errors (target: none: no
5xx, no unexpected status, no traceback in the log).  Exits 1 if a target
is missed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from txregistry.registry.manifest_formats import OCI_MANIFEST
from txregistry.testing.client import HTTPResponse, request
from txregistry.testing.manifests import oci_image
from txregistry.testing.process import RegistryProcess, base_config

SAMPLE_EVERY = 10.0
WARM_UP = 60.0
RSS_GROWTH_TARGET = 0.10
FD_SLACK = 10


@dataclass
class Sample:
    """One look at the process."""

    at: float
    rss_kib: int
    fds: int


@dataclass
class Load:
    """The operations, and what they pushed for the others to use."""

    url: str
    rng: random.Random
    repos: list[str] = field(default_factory=lambda: [f"soak/repo{i}" for i in range(8)])
    pushed: list[tuple[str, str, str]] = field(default_factory=list)  # repo, manifest, layer
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def call(
        self,
        method: str,
        path: str,
        expect: tuple[int, ...],
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> HTTPResponse | None:
        """One request; an error is recorded unless its status is in C{expect}."""
        try:
            response = request(method, f"{self.url}/v2/{path}", body, headers, timeout=30)
        except OSError as error:
            self.errors.append(f"{method} {path}: {error}")
            return None
        if response.status not in expect:
            self.errors.append(f"{method} {path}: {response.status} {response.body[:200]!r}")
            return None
        return response

    def push(self) -> None:
        """A config, a layer and a manifest tagged with a random tag."""
        repo = self.rng.choice(self.repos)
        digests = []
        for blob in (
            json.dumps({"os": "linux", "n": self.rng.random()}).encode(),
            self.rng.randbytes(self.rng.randrange(1, 256 * 1024)),
        ):
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            if self.call("POST", f"{repo}/blobs/uploads/?digest={digest}", (201,), blob) is None:
                return
            digests.append((digest, len(blob)))
        manifest = json.dumps(oci_image(digests[0], digests[1:])).encode()
        tag = f"t{self.rng.randrange(20)}"
        if (
            self.call(
                "PUT", f"{repo}/manifests/{tag}", (201,), manifest, {"Content-Type": OCI_MANIFEST}
            )
            is not None
        ):
            self.pushed.append(
                (repo, "sha256:" + hashlib.sha256(manifest).hexdigest(), digests[1][0])
            )

    def pull(self) -> None:
        """A manifest and its layer (404 if a delete came first)."""
        if not self.pushed:
            return self.push()
        repo, manifest, layer = self.rng.choice(self.pushed)
        self.call(
            "GET", f"{repo}/manifests/{manifest}", (200, 404), headers={"Accept": OCI_MANIFEST}
        )
        self.call("GET", f"{repo}/blobs/{layer}", (200, 404))

    def head(self) -> None:
        """A HEAD of a layer."""
        if not self.pushed:
            return self.push()
        repo, _, layer = self.rng.choice(self.pushed)
        self.call("HEAD", f"{repo}/blobs/{layer}", (200, 404))

    def delete(self) -> None:
        """Delete a manifest and its layer, so storage stays bounded."""
        if len(self.pushed) < 20:
            return self.push()
        repo, manifest, layer = self.pushed.pop(self.rng.randrange(len(self.pushed)))
        self.call("DELETE", f"{repo}/manifests/{manifest}", (202, 404))
        self.call("DELETE", f"{repo}/blobs/{layer}", (202, 404))

    def catalog(self) -> None:
        """The catalog and a repository's tags."""
        self.call("GET", "_catalog?n=100", (200,))
        self.call("GET", f"{self.rng.choice(self.repos)}/tags/list", (200, 404))

    def step(self) -> None:
        """One operation, picked by weight."""
        name = self.rng.choices(
            ["push", "pull", "head", "delete", "catalog"], weights=[3, 5, 3, 2, 1]
        )[0]
        self.counts[name] = self.counts.get(name, 0) + 1
        getattr(self, name)()


def sample(pid: int, started: float) -> Sample:
    """The process's RSS and open descriptors now."""
    rss = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return Sample(time.monotonic() - started, rss, len(os.listdir(f"/proc/{pid}/fd")))


def main() -> int:
    """Run the soak as the arguments say; 0 when every target is met."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run")
    parser.add_argument("--rate", type=float, default=20.0, help="operations per second")
    parser.add_argument("--seed", type=int, default=1, help="fixes the operations and sizes")
    parser.add_argument("--workdir", type=Path, help="storage and log (a new temporary folder)")
    arguments = parser.parse_args()
    workdir = arguments.workdir or Path(tempfile.mkdtemp(prefix="txregistry-soak-"))
    print(f"storage and log in {workdir}", flush=True)
    config = base_config(workdir / "root")
    config["log"] = {"level": "info", "accesslog": {"disabled": True}}
    # The descriptor cache of the embedded default (and Distribution's sample config).
    config["storage"]["cache"] = {"blobdescriptor": "inmemory"}
    process = RegistryProcess(workdir, config, name="soak")
    process.start()
    assert process.process is not None
    pid = process.process.pid
    load = Load(process.url, random.Random(arguments.seed))
    samples: list[Sample] = []
    started = time.monotonic()
    end = started + arguments.minutes * 60
    next_sample = started
    interval = 1.0 / arguments.rate
    next_op = started
    late = 0
    try:
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_sample:
                samples.append(sample(pid, started))
                last = samples[-1]
                print(
                    f"{last.at:6.0f}s rss {last.rss_kib / 1024:7.1f} MiB  fds {last.fds:4d}"
                    f"  ops {sum(load.counts.values()):6d}  errors {len(load.errors)}",
                    flush=True,
                )
                next_sample += SAMPLE_EVERY
            if now < next_op:
                time.sleep(min(next_op, next_sample) - now)
                continue
            load.step()
            next_op += interval
            if time.monotonic() - next_op > 1.0:
                late += 1  # the registry is slower than the rate: do not burst to catch up
                next_op = time.monotonic()
            if not process.running:
                load.errors.append("the registry exited")
                break
        samples.append(sample(pid, started))
    finally:
        process.stop()
    log = process.output(None)
    load.errors += [line for line in log.splitlines() if "Traceback" in line]
    return report(samples, load, late, time.monotonic() - started)


def report(samples: list[Sample], load: Load, late: int, elapsed: float) -> int:
    """Print the figures; 1 if a target is missed."""
    warm = [s for s in samples if s.at >= WARM_UP] or samples[-1:]
    baseline, last = warm[0], samples[-1]
    growth = (last.rss_kib - baseline.rss_kib) / baseline.rss_kib
    operations = sum(load.counts.values())
    print(
        f"ran {elapsed:.0f}s, {operations} operations ({operations / elapsed:.1f}/s) "
        f"{dict(sorted(load.counts.items()))}; fell behind the rate {late} times"
    )
    print(
        f"RSS after warm-up {baseline.rss_kib / 1024:.1f} MiB (at {baseline.at:.0f}s), "
        f"at the end {last.rss_kib / 1024:.1f} MiB: {growth:+.1%} "
        f"(target < {RSS_GROWTH_TARGET:.0%}); peak {max(s.rss_kib for s in samples) / 1024:.1f} MiB"
    )
    print(
        f"open fds: after warm-up {baseline.fds}, at the end {last.fds}, "
        f"max {max(s.fds for s in samples)} (target <= {baseline.fds + FD_SLACK})"
    )
    print(f"errors: {len(load.errors)}")
    for error in load.errors[:20]:
        print(f"  {error}")
    missed = []
    if growth >= RSS_GROWTH_TARGET:
        missed.append("RSS growth")
    if last.fds > baseline.fds + FD_SLACK:
        missed.append("fd count")
    if load.errors:
        missed.append("errors")
    if baseline is samples[-1] and len(samples) > 1:
        missed.append("run shorter than the warm-up")
    print("targets met" if not missed else f"targets missed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
