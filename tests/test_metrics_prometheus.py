"""
The metrics of C{http.debug}, read back through a real Prometheus: a
registry with a debug address is scraped every second, sent a known number
of requests, and Prometheus's query API must give exactly those counts.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Registry
from txregistry.testing.process import free_port
from txregistry.testing.prometheus import PrometheusProcess

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="prometheus is not installed"
)


def test_prometheus_reads_request_counts(
    tmp_path: Path, start_registry_with: Callable[..., Registry]
) -> None:
    """7 GET /v2/ and 5 HEADs of an unknown manifest are counted, by handler, code and method."""
    debug_addr = f"127.0.0.1:{free_port()}"
    registry = start_registry_with(
        None, debug={"addr": debug_addr, "prometheus": {"enabled": True}}
    )
    with PrometheusProcess(tmp_path / "prometheus", [debug_addr]) as prometheus:
        prometheus.wait_for('up{job="txregistry"}', 1.0)
        # The fixture's readiness probes count too: start from what is there.
        before = prometheus.value(
            'registry_http_requests_total{handler="base",method="GET",code="200"}'
        )
        for _ in range(7):
            registry.request("GET", "")
        for _ in range(5):
            response = registry.request("HEAD", "metrics/test/manifests/missing")
            assert response.status == 404
        prometheus.wait_for(
            'registry_http_requests_total{handler="base",method="GET",code="200"}',
            (before or 0.0) + 7,
        )
        prometheus.wait_for(
            'registry_http_requests_total{handler="manifest",method="HEAD",code="404"}', 5.0
        )
        assert (
            prometheus.value(
                'registry_http_request_duration_seconds_count{handler="manifest",method="HEAD"}'
            )
            == 5.0
        )
        assert prometheus.value('registry_http_in_flight_requests{handler="manifest"}') == 0.0
        assert prometheus.value('registry_http_response_size_bytes_count{handler="manifest"}') == 5
        # Every HEAD asked storage at least once how the manifest is.
        stats = prometheus.value('sum(registry_storage_action_seconds_count{driver="filesystem"})')
        assert stats is not None and stats >= 5
        assert prometheus.value("process_cpu_seconds_total") is not None
