# -*- test-case-name: tests.test_metrics -*-
"""
The debug server (C{http.debug}) and the Prometheus metrics it serves.

L{DebugRoot} is the tree of the debug listener: mount a page with
C{root.mount("/debug/health", resource)}.  L{RegistryMetrics} holds every
metric of one registry service; L{MetricsResource} serves them.
"""

from txregistry.debug.metrics import (
    CacheCollector,
    HTTPMetrics,
    NotificationsCollector,
    RegistryMetrics,
    StorageMetrics,
    TotalsCollector,
)
from txregistry.debug.site import DebugRoot, DebugSite, MetricsResource

__all__ = [
    "CacheCollector",
    "DebugRoot",
    "DebugSite",
    "HTTPMetrics",
    "MetricsResource",
    "NotificationsCollector",
    "RegistryMetrics",
    "StorageMetrics",
    "TotalsCollector",
]
