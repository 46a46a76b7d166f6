# -*- test-case-name: tests.test_metrics_prometheus -*-
"""
A Prometheus server for tests: Debian's C{prometheus} (package
C{prometheus}) as a process of its own on a free port of 127.0.0.1,
scraping the given targets every second, its database in its work folder.

L{PrometheusProcess.query} asks the HTTP query API and
L{PrometheusProcess.wait_for} polls it, so tests read back what a
registry's metrics said through a real scraper:

    with PrometheusProcess(tmp_path / "prometheus", ["127.0.0.1:5001"]) as prometheus:
        prometheus.wait_for('registry_http_requests_total{handler="base"}', 7.0)
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import yaml

from txregistry.testing.process import ServerProcess

PROMETHEUS_BINARY = "prometheus"

# One sample of an instant vector: its labels and its value.
Sample = tuple[dict[str, str], float]


class PrometheusProcess(ServerProcess):
    """
    C{prometheus} as a process on 127.0.0.1, ready once C{/-/ready} answers
    200.  Use as a context manager, or call L{start} and L{stop}; without
    Prometheus installed, L{start} fails naming the package.

    @param targets: the C{host:port} addresses scraped every C{interval}.
    @param metrics_path: the path scraped on each.
    @param interval: the scrape interval, in Prometheus's duration format.
    """

    ready_path = "/-/ready"
    ready_status = 200

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str],
        *,
        metrics_path: str = "/metrics",
        interval: str = "1s",
        name: str = "prometheus",
        binary: str = PROMETHEUS_BINARY,
    ) -> None:
        super().__init__(workdir, name=name)
        self.targets = list(targets)
        self.metrics_path = metrics_path
        self.interval = interval
        self.binary = binary

    def config(self) -> dict[str, object]:
        """The configuration file's document."""
        return {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "scrape_configs": [
                {
                    "job_name": "txregistry",
                    "metrics_path": self.metrics_path,
                    "static_configs": [{"targets": self.targets}],
                }
            ],
        }

    def _launch_command(self) -> list[str]:
        binary = shutil.which(self.binary)
        if binary is None:
            raise RuntimeError(
                f"{self.name}: {self.binary} is not installed (apt-get install prometheus)"
            )
        config_path = self.workdir / f"{self.name}.yml"
        config_path.write_text(yaml.safe_dump(self.config()))
        return [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]

    def _failure(self, what: str) -> str:
        return f"{self.name}: Prometheus {what}:\n{self.output()}"

    def query(self, expression: str) -> list[Sample]:
        """
        The instant vector C{expression} evaluates to now
        (C{/api/v1/query}): each sample's labels and value.

        @raise RuntimeError: Prometheus refused the query, or it is no vector.
        """
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
        data = answer.get("data", {})
        if answer.get("status") != "success" or data.get("resultType") != "vector":
            raise RuntimeError(f"{self.name}: query {expression!r} answered {answer!r}")
        return [(sample["metric"], float(sample["value"][1])) for sample in data["result"]]

    def value(self, expression: str) -> float | None:
        """The value of the one sample C{expression} gives, or L{None} when there is none."""
        samples = self.query(expression)
        if len(samples) > 1:
            raise RuntimeError(f"{self.name}: {expression!r} gives {len(samples)} samples")
        return samples[0][1] if samples else None

    def wait_for(self, expression: str, expected: float, timeout: float = 30.0) -> float:
        """
        Poll until C{expression}'s one sample has the C{expected} value;
        returns it.

        @raise AssertionError: it did not within C{timeout} seconds; the
            message says what it was last.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = self.value(expression)
            if value == expected:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: {expression!r} is {value}, not {expected}, after {timeout} s"
                )
            time.sleep(0.2)
