"""
The cost of metrics: manifest C{HEAD} requests/s of one txregistry process
with C{http.debug.prometheus} on against off, in one run, on one machine.

Two txregistry processes side by side, each on a free port of 127.0.0.1
with its own data folder (filesystem storage, the in-memory descriptor
cache, log level C{warn}, no access log) and a small image pushed: "off",
and "on" with a debug address serving C{/metrics}, scraped once a second
during its loads (as Prometheus would).  C{hey} (32 connections), one
registry at a time, alternating (off, on, on, off, ...) C{--rounds} times,
C{--seconds} each; medians, and the ratio on/off against the issue's target
(at least 0.9).

Run: C{.venv/bin/python bench/metrics_bench.py [--rounds N] [--seconds S]
[--json bench/results-metrics.json]} (C{hey}: Debian's package).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import (
    BenchRegistry,
    RegistryOptions,
    alternated,
    machine,
    source_version,
    start_registry,
)
from registry_bench import ACCEPT, IMAGE_REPOSITORY, TAG, Load, Workload, hey, push_image
from txregistry.testing.process import free_port

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.9


@dataclass
class Slice:
    """One load of one registry."""

    metrics_on: bool
    load: Load = field(default_factory=Load)
    scrapes: int = 0


class Scraper:
    """Reads C{/metrics} once a second while a load runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            with urllib.request.urlopen(self.url, timeout=5) as response:
                response.read()
            self.scrapes += 1

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0, help="each load's duration")
    parser.add_argument(
        "--json", type=Path, default=REPOSITORY_ROOT / "bench" / "results-metrics.json"
    )
    args = parser.parse_args(argv)
    workload = Workload(load_seconds=args.seconds)
    scratch = Path(tempfile.mkdtemp(prefix="txregistry-metrics-bench-"))
    debug_addr = f"127.0.0.1:{free_port()}"
    registries: dict[bool, BenchRegistry] = {}
    slices: list[Slice] = []
    cache = ["storage.cache.blobdescriptor=inmemory"]
    try:
        for metrics_on in (False, True):
            debug = [f"http.debug={{addr: '{debug_addr}', prometheus: {{enabled: true}}}}"]
            options = RegistryOptions(config=cache + (debug if metrics_on else []))
            registries[metrics_on] = start_registry(
                "txregistry", scratch / ("on" if metrics_on else "off"), options
            )
            push_image(registries[metrics_on].url, "oci")
        path = f"/v2/{IMAGE_REPOSITORY}/manifests/{TAG}"
        for number in range(args.rounds):
            for metrics_on in alternated((False, True), number):
                registry = registries[metrics_on]
                if metrics_on:
                    with Scraper(f"http://{debug_addr}/metrics") as scraper:
                        load = hey(registry, path, "HEAD", workload, ACCEPT)
                    scrapes = scraper.scrapes
                else:
                    load = hey(registry, path, "HEAD", workload, ACCEPT)
                    scrapes = 0
                slices.append(Slice(metrics_on, load, scrapes))
                print(
                    f"round {number + 1}/{args.rounds} metrics {'on ' if metrics_on else 'off'}: "
                    f"HEAD {load.rps:.0f}/s ({load.errors} errors)"
                    + (f", {scrapes} scrapes" if metrics_on else ""),
                    flush=True,
                )
    finally:
        for registry in registries.values():
            registry.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    off = statistics.median(s.load.rps for s in slices if not s.metrics_on)
    on = statistics.median(s.load.rps for s in slices if s.metrics_on)
    ratio = on / off if off else 0.0
    met = ratio >= TARGET
    errors = sum(s.load.errors for s in slices)
    print(
        f"\nmedians of {args.rounds} loads each, {workload.connections} connections, "
        f"{args.seconds:g} s each, the two registries' loads alternating"
    )
    print(
        f"manifest HEAD: off {off:.0f}/s, on {on:.0f}/s, ratio {ratio:.2f} "
        f"(target >= {TARGET}: {'met' if met else 'NOT met'}); errors: {errors}"
    )
    result: dict[str, Any] = {
        "machine": machine(),
        "source": source_version(),
        "HEAD": {"off": off, "on": on, "ratio": ratio, "target": TARGET},
        "slices": [asdict(s) for s in slices],
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if met and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
