# -*- test-case-name: tests.test_health -*-
"""
Health checks, as Distribution's C{health} section: the storage driver,
files, HTTP URIs and TCP addresses, each checked every interval without
blocking the reactor.  While one fails, the API answers 503 (see
L{txregistry.resources.app.RegistryApp}) and L{HealthResource} (served as
C{/debug/health} on the debug listener) says which and why.
"""

from __future__ import annotations

from txregistry.health.build import build_health_checks
from txregistry.health.checks import (
    Check,
    CheckFailed,
    file_check,
    http_check,
    storage_driver_check,
    tcp_check,
)
from txregistry.health.resource import HealthResource
from txregistry.health.status import HealthChecks, PeriodicCheck, ThresholdStatus

__all__ = [
    "Check",
    "CheckFailed",
    "HealthChecks",
    "HealthResource",
    "PeriodicCheck",
    "ThresholdStatus",
    "build_health_checks",
    "file_check",
    "http_check",
    "storage_driver_check",
    "tcp_check",
]
