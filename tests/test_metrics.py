"""
The debug server's resource tree and the Prometheus metrics, in memory:
what each metric counts, under which labels, and what the debug listener
answers.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from support import temporary_directory
from txregistry.cache.inmemory import InMemoryCache
from txregistry.debug import (
    CacheCollector,
    DebugRoot,
    HTTPMetrics,
    MetricsResource,
    NotificationsCollector,
    RegistryMetrics,
    TotalsCollector,
)
from txregistry.debug.workers import SummedMetricsResource, sum_expositions
from txregistry.digest import Digest
from txregistry.drivers.base import ValidatingDriver
from txregistry.drivers.inmemory import InMemoryDriver
from txregistry.events.delivery import EndpointCounters
from txregistry.registry.gc import CollectionTotals
from txregistry.testing.client import request


def render(root: Resource, path: bytes) -> DummyRequest:
    """Render C{path} below C{root} as Twisted's site would find it."""
    request = DummyRequest(path.strip(b"/").split(b"/") if path != b"/" else [b""])
    resource: Resource = root
    while request.postpath and not resource.isLeaf:
        resource = resource.getChildWithDefault(request.postpath.pop(0), request)
    body = resource.render(request)
    if isinstance(body, bytes):
        request.write(body)
    return request


class Page(Resource):
    """A page that says C{b"page"}."""

    isLeaf = True

    def render_GET(self, request: DummyRequest) -> bytes:
        return b"page"


class DebugRootTests(SynchronousTestCase):
    """L{DebugRoot}: only what is mounted is there."""

    def test_unknown_paths_404(self) -> None:
        """The root, an unknown path and an unknown folder's child are 404s."""
        root = DebugRoot()
        root.mount("/debug/health", Page())
        for path in (b"/", b"/nothing", b"/debug", b"/debug/other"):
            self.assertEqual(render(root, path).responseCode, 404, path)

    def test_mounted(self) -> None:
        """A mounted page answers at its path, nested or not."""
        root = DebugRoot()
        root.mount("/debug/health", Page())
        root.mount("/metrics", Page())
        self.assertEqual(b"".join(render(root, b"/debug/health").written), b"page")
        self.assertEqual(b"".join(render(root, b"/metrics").written), b"page")

    def test_mount_refused(self) -> None:
        """A relative, empty or taken path is refused."""
        root = DebugRoot()
        root.mount("/metrics", Page())
        for path in ("metrics", "/", "/a//b", "/metrics", "/metrics/x"):
            self.assertRaises(ValueError, root.mount, path, Page())

    def test_metrics_resource(self) -> None:
        """The metrics are served in Prometheus's text format."""
        metrics = RegistryMetrics()
        root = DebugRoot()
        root.mount("/metrics", MetricsResource(metrics.registry))
        request = render(root, b"/metrics")
        self.assertEqual(
            request.responseHeaders.getRawHeaders(b"content-type"),
            [b"text/plain; version=0.0.4; charset=utf-8"],
        )
        text = b"".join(request.written).decode()
        self.assertIn("# TYPE registry_http_requests_total counter", text)
        self.assertIn("process_cpu_seconds_total", text)


class HTTPMetricsTests(SynchronousTestCase):
    """L{HTTPMetrics}: Distribution's names, labels and handler names."""

    def test_request_counted(self) -> None:
        """A finished request is counted under its handler, code and method."""
        registry = CollectorRegistry()
        metrics = HTTPMetrics(registry)
        for _ in range(3):
            began = metrics.started("upload_chunk")
            self.assertEqual(
                registry.get_sample_value(
                    "registry_http_in_flight_requests", {"handler": "blob_upload_chunk"}
                ),
                1.0,
            )
            metrics.finished("upload_chunk", b"PATCH", 202, began, 2048, 0)
        labels = {"handler": "blob_upload_chunk", "code": "202", "method": "PATCH"}
        self.assertEqual(registry.get_sample_value("registry_http_requests_total", labels), 3)
        self.assertEqual(
            registry.get_sample_value(
                "registry_http_request_duration_seconds_count",
                {"handler": "blob_upload_chunk", "method": "PATCH"},
            ),
            3,
        )
        self.assertEqual(
            registry.get_sample_value(
                "registry_http_request_size_bytes_sum", {"handler": "blob_upload_chunk"}
            ),
            3 * 2048,
        )
        self.assertEqual(
            registry.get_sample_value(
                "registry_http_in_flight_requests", {"handler": "blob_upload_chunk"}
            ),
            0,
        )


class CollectorTests(SynchronousTestCase):
    """The collectors read what is counted elsewhere, at scrape time."""

    def test_storage_actions(self) -> None:
        """Driver operations are timed under Distribution's action names."""
        metrics = RegistryMetrics()
        driver = ValidatingDriver(InMemoryDriver())
        driver.metrics.observe = metrics.storage.observer("inmemory")
        driver.put_content("/a", b"x")
        driver.get_content("/a")
        driver.get_content("/a")
        self.failureResultOf(driver.stat("/missing"))
        value = metrics.registry.get_sample_value
        count = "registry_storage_action_seconds_count"
        self.assertEqual(value(count, {"driver": "inmemory", "action": "GetContent"}), 2)
        self.assertEqual(value(count, {"driver": "inmemory", "action": "PutContent"}), 1)
        self.assertEqual(value(count, {"driver": "inmemory", "action": "Stat"}), 1)

    def test_cache(self) -> None:
        """Hits and misses of the in-memory cache, as Distribution's cache counter."""
        registry = CollectorRegistry()
        cache = InMemoryCache()
        registry.register(CacheCollector(cache))
        digest = Digest.parse("sha256:" + "a" * 64)
        cache.get("r", "blob", digest)
        cache.set("r", "blob", digest, 3)
        cache.get("r", "blob", digest)
        cache.get("r", "blob", digest)
        value = registry.get_sample_value
        self.assertEqual(value("registry_storage_cache_total", {"type": "Request"}), 3)
        self.assertEqual(value("registry_storage_cache_total", {"type": "Hit"}), 2)
        self.assertEqual(value("registry_storage_cache_total", {"type": "Miss"}), 1)
        self.assertIsNone(value("txregistry_redis_trusted"))

    def test_notifications(self) -> None:
        """Each endpoint's counters, by endpoint."""
        registry = CollectorRegistry()
        counters = {"hook": EndpointCounters(pending=2, delivered=5, failed=1, ignored=3)}
        registry.register(NotificationsCollector(lambda: counters))
        value = registry.get_sample_value
        labels = {"endpoint": "hook"}
        self.assertEqual(value("txregistry_notifications_pending", labels), 2)
        self.assertEqual(value("txregistry_notifications_delivered_total", labels), 5)
        self.assertEqual(value("txregistry_notifications_failed_total", labels), 1)
        self.assertEqual(value("txregistry_notifications_ignored_total", labels), 3)
        counters["hook"].delivered += 1
        self.assertEqual(value("txregistry_notifications_delivered_total", labels), 6)

    def test_totals(self) -> None:
        """Plain attributes become counters, read when scraped."""
        registry = CollectorRegistry()
        totals = CollectionTotals()
        registry.register(TotalsCollector(totals, [("txregistry_gc_runs", "Runs.", "runs")]))
        totals.runs += 2
        self.assertEqual(registry.get_sample_value("txregistry_gc_runs_total"), 2)


class DebugServiceTests(SynchronousTestCase):
    """The debug listener as the service builds it."""

    def test_metrics_path_taken_by_health(self) -> None:
        """A prometheus path that is /debug/health's is a mistake naming the key."""
        from txregistry.config import ConfigError, load_config
        from txregistry.drivers.plugins import driver_factories
        from txregistry.service import build_service

        config = load_config(
            "version: 0.1\nstorage: {inmemory: {}}\n"
            "http: {secret: s, addr: '127.0.0.1:0', debug: {addr: '127.0.0.1:0', "
            "prometheus: {enabled: true, path: /debug/health}}}\n",
            environ={},
            known_drivers=driver_factories(),
        )
        error = self.assertRaises(ConfigError, build_service, config)
        self.assertEqual(error.key, "http.debug.prometheus.path")


class SummedMetricsTests(TestCase):
    """The metrics of several processes, added up (txregistry.debug.workers)."""

    def test_sum_expositions(self) -> None:
        """Counters, histograms and gauges are added; start times keep the earliest."""
        one = (
            "# HELP requests_total Requests.\n# TYPE requests_total counter\n"
            'requests_total{code="200"} 3.0\nrequests_created{code="200"} 1.7e9\n'
            "# HELP duration Seconds.\n# TYPE duration histogram\n"
            'duration_bucket{le="1.0"} 2.0\nduration_bucket{le="+Inf"} 3.0\n'
            "duration_count 3.0\nduration_sum 1.5\n"
            "# HELP process_start_time_seconds Start.\n# TYPE process_start_time_seconds gauge\n"
            "process_start_time_seconds 100.0\n"
        )
        two = (
            "# HELP requests_total Requests.\n# TYPE requests_total counter\n"
            'requests_total{code="200"} 4.0\nrequests_total{code="404"} 1.0\n'
            "# HELP duration Seconds.\n# TYPE duration histogram\n"
            'duration_bucket{le="1.0"} 1.0\nduration_bucket{le="+Inf"} 1.0\n'
            "duration_count 1.0\nduration_sum 0.5\n"
            "# HELP process_start_time_seconds Start.\n# TYPE process_start_time_seconds gauge\n"
            "process_start_time_seconds 50.0\n"
        )
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(sum_expositions([one, two]).decode())
            for sample in family.samples
        }
        self.assertEqual(samples[("requests_total", (("code", "200"),))], 7.0)
        self.assertEqual(samples[("requests_total", (("code", "404"),))], 1.0)
        self.assertEqual(samples[("duration_bucket", (("le", "1.0"),))], 3.0)
        self.assertEqual(samples[("duration_count", ())], 4.0)
        self.assertEqual(samples[("duration_sum", ())], 2.0)
        self.assertEqual(samples[("process_start_time_seconds", ())], 50.0)
        self.assertFalse(any(name.endswith("_created") for name, _ in samples))

    async def test_worker_not_answering_left_out(self) -> None:
        """A worker's socket nobody listens on (one restarting) is left out of the scrape."""
        folder = temporary_directory(self)
        socket = os.path.join(folder, "worker-1.sock")
        with open(socket, "w"):
            pass  # a leftover file, no listener
        registry = CollectorRegistry()
        Counter("alone", "Requests.", registry=registry).inc(2)
        resource = SummedMetricsResource(registry, folder)
        request = DummyRequest([b""])
        finished = request.notifyFinish()
        self.assertEqual(resource.render_GET(request), NOT_DONE_YET)
        await finished
        text = b"".join(request.written).decode()
        self.assertIn("alone_total 2.0", text)


def _sample(text: str, name: str) -> float:
    """The value of the unlabelled sample C{name} in a metrics page."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def test_upload_bytes_counted(start_registry_with: Any) -> None:
    """
    Over HTTP: the bytes of a chunked upload are counted as they arrive.
    """
    from txregistry.testing.process import free_port

    debug_addr = f"127.0.0.1:{free_port()}"
    server = start_registry_with(
        {},
        debug={"addr": debug_addr, "prometheus": {"enabled": True}},
    )
    metrics_url = f"http://{debug_addr}/metrics"
    before = _sample(request("GET", metrics_url).body.decode(), "txregistry_upload_bytes_total")
    location = server.start_upload("metrics/app").header("Location") or ""
    data = os.urandom(70_001)
    patched = server.request("PATCH", location, data)
    assert patched.status == 202, patched.body
    after = _sample(request("GET", metrics_url).body.decode(), "txregistry_upload_bytes_total")
    assert after - before == len(data)
