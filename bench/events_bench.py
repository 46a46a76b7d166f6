"""
The cost of notifications: manifest C{PUT} and C{GET} requests/s of one
txregistry process with one webhook endpoint configured against one
without, in one run, on one machine.

Two txregistry processes run side by side, each on a free port of
127.0.0.1 with its own data folder (filesystem storage, log level C{warn},
no access log): "off", and "on" with one endpoint, a receiver process
(C{tests/event_receiver.py}) on loopback answering 200, and an outbox of
its own.  Each gets a small image pushed; then, with C{hey} (32
connections), one registry at a time:

 1. C{PUT} of the manifest by tag (each one stored again, and with events
    on, a push event on disk, group-committed, before the 201);
 2. C{GET} of the manifest by tag (a pull event each, not waited for).

Each method gets C{--rounds} loads per registry, alternating (off, on, on,
off, ...), so that the machine's speed drifting (it is shared) weighs on
both alike; after each load of "on", its events are waited for, so that
delivering them does not weigh on the next load.  It prints the medians of
requests/s, the ratios on/off against the issue's targets (PUT at least
0.8, GET at least 0.9), and whether the receiver got every event; every
figure goes to C{--json}.

Run: C{.venv/bin/python bench/events_bench.py [--rounds N] [--seconds S]
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

from common import (
    BenchRegistry,
    alternated,
    bench_config,
    connection,
    expect,
    machine,
    source_version,
)
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
class Slice:
    """One load of one registry."""

    events_on: bool
    method: str
    load: Load = field(default_factory=Load)


def manifest_of(base_url: str) -> bytes:
    """The image's manifest, as pushed (the benchmark PUTs it again and again)."""
    client = connection(base_url)
    try:
        client.request("GET", f"/v2/{IMAGE_REPOSITORY}/manifests/{TAG}", headers={"Accept": ACCEPT})
        return expect(client.getresponse(), 200, "GET of the manifest")
    finally:
        client.close()


def start_registry(events_on: bool, scratch: Path, receiver: Receiver) -> BenchRegistry:
    """A registry with its own data and, with events on, the endpoint and an outbox."""
    workdir = Path(
        tempfile.mkdtemp(prefix="events-on-" if events_on else "events-off-", dir=scratch)
    )
    config = bench_config(workdir / "data")
    if events_on:
        config["notifications"] = {
            "endpoints": [{"name": "bench", "url": receiver.url, "timeout": "5s"}],
            "outbox": {"path": str(workdir / "outbox")},
        }
    registry = BenchRegistry(workdir, config, reference=False)
    registry.start()
    push_image(registry.url, "oci")
    return registry


def wait_for_events(receiver: Receiver, expected: int) -> int:
    """Wait (at most a minute) until the receiver has C{expected} events; how many it has."""
    deadline = time.monotonic() + 60
    while receiver.events() < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return receiver.events()


def settled_events(receiver: Receiver) -> int:
    """The receiver's events once no more have come for a second."""
    count = -1
    while (latest := receiver.events()) != count:
        count = latest
        time.sleep(1)
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0, help="each load's duration")
    parser.add_argument(
        "--json", type=Path, default=REPOSITORY_ROOT / "bench" / "results-events.json"
    )
    args = parser.parse_args(argv)
    workload = Workload(load_seconds=args.seconds)
    scratch = Path(tempfile.mkdtemp(prefix="txregistry-events-bench-"))
    receiver = Receiver(scratch)
    registries: dict[bool, BenchRegistry] = {}
    slices: list[Slice] = []
    events_expected = 0
    events_received = 0
    try:
        for events_on in (False, True):
            registries[events_on] = start_registry(events_on, scratch, receiver)
        manifest_files: dict[bool, Path] = {}
        for events_on, registry in registries.items():
            # Each registry PUTs again the manifest of its own image.
            manifest_files[events_on] = scratch / f"manifest-{events_on}.json"
            manifest_files[events_on].write_bytes(manifest_of(registry.url))
        path = f"/v2/{IMAGE_REPOSITORY}/manifests/{TAG}"
        events_expected = settled_events(receiver)  # the image's push
        for method in ("PUT", "GET"):
            for number in range(args.rounds):
                for events_on in alternated((False, True), number):
                    registry = registries[events_on]
                    if method == "PUT":
                        load = hey(
                            registry,
                            path,
                            "PUT",
                            workload,
                            None,
                            body=(manifest_files[events_on], OCI_MANIFEST),
                        )
                    else:
                        load = hey(registry, path, "GET", workload, ACCEPT)
                    slices.append(Slice(events_on, method, load))
                    if events_on:
                        # Its delivery done before the next load, so as not to weigh on it.
                        events_expected += load.statuses.get("201" if method == "PUT" else "200", 0)
                        events_received = wait_for_events(receiver, events_expected)
                    print(
                        f"{method} round {number + 1}/{args.rounds} events "
                        f"{'on ' if events_on else 'off'}: {load.rps:.0f}/s ({load.errors} errors)"
                        + (
                            f", {events_received}/{events_expected} events received"
                            if events_on
                            else ""
                        ),
                        flush=True,
                    )
    finally:
        for registry in registries.values():
            registry.stop()
        receiver.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    result: dict[str, Any] = {"machine": machine(), "source": source_version()}
    print(f"\nmedians of {args.rounds} loads each, {workload.connections} connections, ", end="")
    print(f"{args.seconds:g} s each, the two registries' loads alternating")
    ok = True
    for method in ("PUT", "GET"):
        off = statistics.median(
            s.load.rps for s in slices if s.method == method and not s.events_on
        )
        on = statistics.median(s.load.rps for s in slices if s.method == method and s.events_on)
        ratio = on / off if off else 0.0
        met = ratio >= TARGETS[method]
        ok = ok and met
        print(
            f"manifest {method}: off {off:.0f}/s, on {on:.0f}/s, ratio {ratio:.2f} "
            f"(target >= {TARGETS[method]}: {'met' if met else 'NOT met'})"
        )
        result[method] = {"off": off, "on": on, "ratio": ratio, "target": TARGETS[method]}
    errors = sum(s.load.errors for s in slices)
    lost = events_expected - events_received
    print(f"errors: {errors}; events: {events_received} of {events_expected} received")
    result["events"] = {"expected": events_expected, "received": events_received}
    result["slices"] = [asdict(s) for s in slices]
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ok and errors == 0 and lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
