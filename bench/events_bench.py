"""
The cost of notifications: manifest C{PUT} and C{GET} requests/s of one
txregistry process with one webhook endpoint configured against none, in
one run, on one machine.

For each run, and each of "off" and "on" (the order alternates between
runs), a fresh txregistry on a free port of 127.0.0.1 with its own data
folder (filesystem storage, log level C{warn}, no access log); "on" adds
one endpoint, a receiver process (C{tests/event_receiver.py}) on loopback
answering 200, and an outbox of its own.  Each pushes a small image, then
loads, with C{hey} (32 connections):

 1. C{PUT} of the manifest by tag (each one stored again, and with events
    on, a push event on disk, group-committed, before the 201);
 2. C{GET} of the manifest by tag (a pull event each, not waited for).

It prints the medians of requests/s, the ratios on/off against the issue's
targets (PUT at least 0.8, GET at least 0.9), the events the receiver got,
and the registry's peak RSS; every figure goes to C{--json}.

Run: C{.venv/bin/python bench/events_bench.py [--runs N] [--seconds S]
[--json bench/results-events.json]} (C{hey}: Debian's package).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import BenchRegistry, bench_config, connection, expect, machine, source_version
from registry_bench import (
    ACCEPT,
    IMAGE_REPOSITORY,
    TAG,
    Load,
    Workload,
    hey,
    push_image,
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
RECEIVER = REPOSITORY_ROOT / "tests" / "event_receiver.py"
TARGETS = {"PUT": 0.8, "GET": 0.9}


class Receiver:
    """The webhook receiver, a process of its own on loopback."""

    def __init__(self, folder: Path) -> None:
        self.record = folder / "events.jsonl"
        port_file = folder / "port"
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(RECEIVER),
                "--port",
                "0",
                "--record",
                str(self.record),
                "--control-port-file",
                str(port_file),
            ],
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not port_file.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the receiver did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port_file.read_text().strip()}/events"

    def events(self) -> int:
        """How many events it has recorded."""
        if not self.record.exists():
            return 0
        count = 0
        with open(self.record, "rb") as lines:
            for line in lines:
                if line.endswith(b"\n"):
                    count += len(json.loads(line)["body"]["events"])
        return count

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@dataclass
class Run:
    """One registry's figures."""

    events_on: bool
    put: Load = field(default_factory=Load)
    get: Load = field(default_factory=Load)
    events_received: int = 0


def manifest_of(base_url: str) -> bytes:
    """The image's manifest, as pushed (the benchmark PUTs it again and again)."""
    client = connection(base_url)
    try:
        client.request("GET", f"/v2/{IMAGE_REPOSITORY}/manifests/{TAG}", headers={"Accept": ACCEPT})
        return expect(client.getresponse(), 200, "GET of the manifest")
    finally:
        client.close()


def bench_one(events_on: bool, scratch: Path, receiver: Receiver, workload: Workload) -> Run:
    """Start a registry, with or without the endpoint, and load it."""
    workdir = Path(tempfile.mkdtemp(prefix="events-", dir=scratch))
    config = bench_config(workdir / "data")
    if events_on:
        config["notifications"] = {
            "endpoints": [{"name": "bench", "url": receiver.url, "timeout": "5s"}],
            "outbox": {"path": str(workdir / "outbox")},
        }
    registry = BenchRegistry(workdir, config, reference=False)
    registry.start()
    run = Run(events_on)
    before = receiver.events()
    try:
        push_image(registry.url, "oci")
        manifest_file = workdir / "manifest.json"
        manifest_file.write_bytes(manifest_of(registry.url))
        path = f"/v2/{IMAGE_REPOSITORY}/manifests/{TAG}"
        run.put = hey(registry, path, "PUT", workload, None, body=(manifest_file, OCI_MANIFEST))
        run.get = hey(registry, path, "GET", workload, ACCEPT)
        if events_on:
            expected = run.put.statuses.get("201", 0) + run.get.statuses.get("200", 0)
            deadline = time.monotonic() + 60
            while receiver.events() - before < expected and time.monotonic() < deadline:
                time.sleep(0.2)
            run.events_received = receiver.events() - before
    finally:
        registry.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="each load's duration")
    parser.add_argument(
        "--json", type=Path, default=REPOSITORY_ROOT / "bench" / "results-events.json"
    )
    args = parser.parse_args(argv)
    workload = Workload(load_seconds=args.seconds)
    scratch = Path(tempfile.mkdtemp(prefix="txregistry-events-bench-"))
    receiver = Receiver(scratch)
    runs: list[Run] = []
    try:
        for number in range(args.runs):
            order = (False, True) if number % 2 == 0 else (True, False)
            for events_on in order:
                run = bench_one(events_on, scratch, receiver, workload)
                runs.append(run)
                print(
                    f"run {number + 1}/{args.runs} events {'on ' if events_on else 'off'}: "
                    f"PUT {run.put.rps:.0f}/s ({run.put.errors} errors), "
                    f"GET {run.get.rps:.0f}/s ({run.get.errors} errors)"
                    + (f", {run.events_received} events received" if events_on else ""),
                    flush=True,
                )
    finally:
        receiver.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    result: dict[str, Any] = {"machine": machine(), "source": source_version(), "runs": []}
    print(f"\nmedians of {args.runs} runs, {workload.connections} connections, ", end="")
    print(f"{args.seconds:g} s each")
    ok = True
    for method in ("PUT", "GET"):
        off = statistics.median(
            (run.put if method == "PUT" else run.get).rps for run in runs if not run.events_on
        )
        on = statistics.median(
            (run.put if method == "PUT" else run.get).rps for run in runs if run.events_on
        )
        ratio = on / off if off else 0.0
        met = ratio >= TARGETS[method]
        ok = ok and met
        print(
            f"manifest {method}: off {off:.0f}/s, on {on:.0f}/s, ratio {ratio:.2f} "
            f"(target >= {TARGETS[method]}: {'met' if met else 'NOT met'})"
        )
        result[method] = {"off": off, "on": on, "ratio": ratio, "target": TARGETS[method]}
    errors = sum(run.put.errors + run.get.errors for run in runs)
    print(f"errors: {errors}")
    result["runs"] = [asdict(run) for run in runs]
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ok and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
