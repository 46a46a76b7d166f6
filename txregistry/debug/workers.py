# -*- test-case-name: tests.test_metrics,tests.test_workers -*-
"""
The metrics of every process under C{--workers}, summed on the one debug
address: each worker serves its own on a Unix socket in a folder the
supervisor makes (L{METRICS_FOLDER_VARIABLE}), and the supervisor's
C{/metrics} reads them all, with its own, and adds them up.

A sample is summed with the samples of the same name and labels in the
other processes (counters, histograms, gauges such as requests in flight),
except process start times, of which the earliest is kept; C{_created}
samples are left out.  A worker that does not answer in time (one being
restarted) is left out of that scrape.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.web.client import Agent, readBody
from twisted.web.iweb import IAgentEndpointFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from txregistry.debug.site import METRICS_CONTENT_TYPE

# Set by the supervisor in its workers' environment: the folder of their sockets.
METRICS_FOLDER_VARIABLE = "TXREGISTRY_METRICS_FOLDER"
# How long a worker has to answer a scrape.
WORKER_TIMEOUT = 2.0


def worker_socket(folder: str, number: str) -> str:
    """Where worker C{number} serves its metrics."""
    return os.path.join(folder, f"worker-{number}.sock")


def sum_expositions(texts: Iterable[str]) -> bytes:
    """The metrics of C{texts} (Prometheus's text format), added up (see the module)."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name.endswith("_created"):
                continue
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            summed = values[family.name]
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in summed:
                    summed[key] = sample.value
                elif sample.name.endswith("_start_time_seconds"):
                    summed[key] = min(summed[key], sample.value)
                else:
                    summed[key] += sample.value
    for name, family in families.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)

    class Summed:
        def collect(self) -> Iterable[Metric]:
            return families.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Summed())  # type: ignore[arg-type]
    return generate_latest(registry)


@implementer(IAgentEndpointFactory)
class _SocketEndpoints:
    """Connects an Agent's requests to one Unix socket, whatever their URL."""

    def __init__(self, reactor: Any, path: str) -> None:
        self.reactor = reactor
        self.path = path

    def endpointForURI(self, uri: Any) -> UNIXClientEndpoint:
        return UNIXClientEndpoint(self.reactor, self.path, timeout=WORKER_TIMEOUT)


async def _read_worker(reactor: Any, path: str) -> str:
    agent = Agent.usingEndpointFactory(reactor, _SocketEndpoints(reactor, path))
    response = await agent.request(b"GET", b"http://worker/metrics")
    body: bytes = await readBody(response)
    return body.decode("utf-8")


class SummedMetricsResource(Resource):
    """
    C{/metrics} of the supervisor: its own registry's and its workers',
    added up.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry, folder: str, reactor: Any = None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.registry = registry
        self.folder = folder
        self.reactor = reactor

    def render_GET(self, request: Request) -> Any:
        """Every process's metrics, summed; the workers are asked now."""
        readings: list[Deferred[str]] = []
        for path in sorted(glob.glob(worker_socket(self.folder, "*"))):
            reading = ensureDeferred(_read_worker(self.reactor, path))
            reading.addTimeout(WORKER_TIMEOUT, self.reactor)
            readings.append(reading)

        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def answer(results: list[tuple[bool, Any]]) -> None:
            if gone:
                return  # the scraper left
            texts = [generate_latest(self.registry).decode("utf-8")]
            texts += [text for succeeded, text in results if succeeded]
            request.setHeader(b"Content-Type", METRICS_CONTENT_TYPE)
            request.write(sum_expositions(texts))
            request.finish()

        DeferredList(readings, consumeErrors=True).addCallback(answer)
        return NOT_DONE_YET
