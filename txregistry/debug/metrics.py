# -*- test-case-name: tests.test_metrics -*-
"""
The registry's Prometheus metrics, kept in a L{CollectorRegistry} of their
own (one per service, so that tests and several services in one process do
not clash).

Distribution's names and labels are kept where it has them: the HTTP
metrics of its instrumented handlers (C{registry_http_*}, one C{handler}
per route), C{registry_storage_action_seconds} and
C{registry_storage_cache_total}.  txregistry's own are C{txregistry_*}.

What a request costs is a few counter and histogram updates on children
found in a dict: the C{.labels(...)} lookup is paid once per label set.
What is already counted elsewhere (the caches' hits, the notification
endpoints' counters, the garbage collector's totals) is read at scrape time
by a collector, which costs the requests nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

# Distribution's handler names (its route names, "-" made "_") for ours.
HANDLER_NAMES: Mapping[str, str] = {
    "base": "base",
    "catalog": "catalog",
    "tags": "tags",
    "manifest": "manifest",
    "referrers": "referrers",
    "blob": "blob",
    "bad_digest": "blob",
    "upload": "blob_upload",
    "upload_chunk": "blob_upload_chunk",
}

# Distribution's storage action names (driver/base) for our operations.
ACTION_NAMES: Mapping[str, str] = {
    "get_content": "GetContent",
    "put_content": "PutContent",
    "reader": "Reader",
    "writer": "Writer",
    "stat": "Stat",
    "list": "List",
    "move": "Move",
    "delete": "Delete",
    "redirect_url": "RedirectURL",
    "walk": "Walk",
    "delete_many": "DeleteMany",
    "get_contents": "GetContents",
    "list_files": "ListFiles",
}

# docker/go-metrics' defaults, which Distribution uses.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60)
SIZE_BUCKETS = tuple(1024.0 * 2**power for power in range(22))  # 1 KiB to 2 GiB


class HTTPMetrics:
    """
    The C{registry_http_*} metrics, fed by L{txregistry.resources.app.RegistryApp}
    for every request that matched a route.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "requests",
            "Total number of HTTP requests made.",
            ["handler", "code", "method"],
            namespace="registry",
            subsystem="http",
            registry=registry,
        )
        self.duration = Histogram(
            "request_duration_seconds",
            "The HTTP request latencies in seconds.",
            ["handler", "method"],
            namespace="registry",
            subsystem="http",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.request_size = Histogram(
            "request_size_bytes",
            "The HTTP request body sizes in bytes (Content-Length).",
            ["handler"],
            namespace="registry",
            subsystem="http",
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.response_size = Histogram(
            "response_size_bytes",
            "The HTTP response body sizes in bytes.",
            ["handler"],
            namespace="registry",
            subsystem="http",
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "in_flight_requests",
            "The in-flight HTTP requests.",
            ["handler"],
            namespace="registry",
            subsystem="http",
            registry=registry,
        )
        # Children by label values, found without .labels() per request.
        self._by_route: dict[str, tuple[Any, Any, Any, str]] = {}
        self._counted: dict[tuple[str, bytes, int], Any] = {}
        self._timed: dict[tuple[str, bytes], Any] = {}

    def _route(self, route: str) -> tuple[Any, Any, Any, str]:
        found = self._by_route.get(route)
        if found is None:
            handler = HANDLER_NAMES.get(route, route)
            found = self._by_route[route] = (
                self.in_flight.labels(handler),
                self.request_size.labels(handler),
                self.response_size.labels(handler),
                handler,
            )
        return found

    def started(self, route: str) -> float:
        """A request for C{route} (our route name) began; returns when."""
        self._route(route)[0].inc()
        return time.perf_counter()

    def finished(
        self,
        route: str,
        method: bytes,
        code: int,
        began: float,
        request_size: int,
        response_size: int,
    ) -> None:
        """A request L{started} at C{began} was answered (or its client left)."""
        seconds = time.perf_counter() - began
        in_flight, request_sizes, response_sizes, handler = self._route(route)
        in_flight.dec()
        counter = self._counted.get((route, method, code))
        if counter is None:
            counter = self._counted[(route, method, code)] = self.requests.labels(
                handler, str(code), method.decode("ascii", "replace")
            )
        counter.inc()
        timer = self._timed.get((route, method))
        if timer is None:
            timer = self._timed[(route, method)] = self.duration.labels(
                handler, method.decode("ascii", "replace")
            )
        timer.observe(seconds)
        request_sizes.observe(request_size)
        response_sizes.observe(response_size)


class StorageMetrics:
    """C{registry_storage_action_seconds}: how long each driver operation took."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.action = Histogram(
            "action_seconds",
            "The number of seconds that the storage action takes.",
            ["driver", "action"],
            namespace="registry",
            subsystem="storage",
            registry=registry,
        )

    def observer(self, driver: str) -> Callable[[str, float], None]:
        """
        What L{txregistry.drivers.base.DriverMetrics.observe} calls for
        C{driver}: one observation of an operation's seconds.
        """
        children: dict[str, Any] = {}

        def observe(operation: str, seconds: float) -> None:
            child = children.get(operation)
            if child is None:
                action = ACTION_NAMES.get(operation, operation)
                child = children[operation] = self.action.labels(driver, action)
            child.observe(seconds)

        return observe


class CacheCollector(Collector):
    """
    C{registry_storage_cache_total} (C{type}: C{Request}, C{Hit}, C{Miss}),
    as Distribution's, read at scrape time from a cache's C{hits} and
    C{misses}; for the Redis cache, C{txregistry_redis_*} too.
    """

    def __init__(self, cache: object) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        """See L{Collector.collect}."""
        hits = getattr(self.cache, "hits", None)
        misses = getattr(self.cache, "misses", None)
        if hits is None or misses is None:
            return
        family = CounterMetricFamily(
            "registry_storage_cache",
            "The number of cache request received",
            labels=["type"],
        )
        family.add_metric(["Request"], hits + misses)
        family.add_metric(["Hit"], hits)
        family.add_metric(["Miss"], misses)
        yield family
        trusted = getattr(self.cache, "trusted", None)
        if trusted is None:
            return
        yield GaugeMetricFamily(
            "txregistry_redis_trusted",
            "1 while the Redis cache answers lookups, 0 while lookups go to storage.",
            value=1 if trusted else 0,
        )
        yield CounterMetricFamily(
            "txregistry_redis_failures",
            "Redis commands that failed or timed out.",
            value=getattr(self.cache, "failures", 0),
        )
        yield CounterMetricFamily(
            "txregistry_redis_outages",
            "How many times Redis was lost.",
            value=getattr(self.cache, "outages", 0),
        )


class NotificationsCollector(Collector):
    """
    Each notification endpoint's counters (L{EndpointCounters}), read at
    scrape time: C{txregistry_notifications_pending} and the totals of
    events delivered, failed deliveries and events ignored.

    @param counters: returns the counters by endpoint name.
    """

    def __init__(self, counters: Callable[[], Mapping[str, Any]]) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        """See L{Collector.collect}."""
        pending = GaugeMetricFamily(
            "txregistry_notifications_pending",
            "Events stored for the endpoint and not delivered yet.",
            labels=["endpoint"],
        )
        totals = {
            "delivered": CounterMetricFamily(
                "txregistry_notifications_delivered",
                "Events the endpoint took.",
                labels=["endpoint"],
            ),
            "failed": CounterMetricFamily(
                "txregistry_notifications_failed",
                "Deliveries to the endpoint that failed (each retry counts).",
                labels=["endpoint"],
            ),
            "ignored": CounterMetricFamily(
                "txregistry_notifications_ignored",
                "Events the endpoint's ignore rules dropped.",
                labels=["endpoint"],
            ),
        }
        for name, counters in sorted(self.counters().items()):
            pending.add_metric([name], counters.pending)
            for attribute, family in totals.items():
                family.add_metric([name], getattr(counters, attribute))
        yield pending
        yield from totals.values()


class TotalsCollector(Collector):
    """
    Counters kept as plain attributes of an object (the garbage collector's
    L{txregistry.registry.gc.CollectionTotals}, the uploads'
    L{txregistry.registry.uploads.UploadTotals}), read at scrape time.

    @param counters: metric name (without C{_total}), help and attribute.
    """

    def __init__(self, source: object, counters: list[tuple[str, str, str]]) -> None:
        self.source = source
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        """See L{Collector.collect}."""
        for name, documentation, attribute in self.counters:
            yield CounterMetricFamily(name, documentation, value=getattr(self.source, attribute))


class RegistryMetrics:
    """
    Every metric of one registry service, in L{registry}: what the debug
    server's metrics resource serves.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http = HTTPMetrics(self.registry)
        self.storage = StorageMetrics(self.registry)
        ProcessCollector(registry=self.registry)

    def watch(self, collector: Collector) -> None:
        """Add a collector read at scrape time."""
        self.registry.register(collector)
