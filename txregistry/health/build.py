# -*- test-case-name: tests.test_health -*-
"""
The checks the C{health} section asks for, named as Distribution names
them: C{storagedriver_<driver>}, then each file's path, URI and address.
"""

from __future__ import annotations

from typing import Any

from txregistry.config import Config
from txregistry.health.checks import file_check, http_check, storage_driver_check, tcp_check
from txregistry.health.status import HealthChecks, PeriodicCheck
from txregistry.interfaces import IStorageDriver


def build_health_checks(
    config: Config, driver: IStorageDriver, reactor: Any
) -> HealthChecks | None:
    """
    The health checks of C{config}, over C{driver}, timed (and connecting)
    with C{reactor}; L{None} when the section enables none.
    """
    health = config.health
    if not health.enabled:
        return None
    checks = []
    storage = health.storagedriver
    if storage.enabled:
        checks.append(
            PeriodicCheck(
                f"storagedriver_{config.storage.driver}",
                storage_driver_check(driver),
                storage.interval,
                storage.threshold,
                reactor,
            )
        )
    for file in health.files:
        # Distribution does not threshold file checks: one sighting counts.
        checks.append(PeriodicCheck(file.file, file_check(file.file), file.interval, 1, reactor))
    for target in health.http:
        check = http_check(target.uri, target.statuscode, target.timeout, target.headers, reactor)
        checks.append(PeriodicCheck(target.uri, check, target.interval, target.threshold, reactor))
    for address in health.tcp:
        check = tcp_check(address.host, address.port, address.timeout, reactor)
        checks.append(
            PeriodicCheck(address.addr, check, address.interval, address.threshold, reactor)
        )
    return HealthChecks(checks)
