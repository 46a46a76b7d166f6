# -*- test-case-name: tests.test_health -*-
"""
The kinds of health check, as Distribution's (C{health/checks} and the
storage driver check of C{registry/handlers/app.go}): each is a callable
returning a Deferred that fires when the check passes and fails, with an
exception whose text says why, when it does not.  None blocks the reactor.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.web.client import Agent
from twisted.web.http_headers import Headers

from txregistry.drivers.errors import PathNotFoundError
from txregistry.interfaces import IStorageDriver
from txregistry.threads import in_thread

# A check: fires with anything when it passes, fails with the reason.
Check = Callable[[], Deferred[object]]


class CheckFailed(Exception):
    """A check did not pass; the text says why."""


def storage_driver_check(driver: IStorageDriver) -> Check:
    """
    Stat the storage root through C{driver}.  A missing root passes, as in
    Distribution: the backend answered; any other error fails.
    """

    async def stat_root() -> None:
        try:
            await driver.stat("/")
        except PathNotFoundError:
            pass

    def check() -> Deferred[object]:
        return ensureDeferred(stat_root())

    return check


def file_check(path: str) -> Check:
    """Fail while C{path} exists (to take a registry out of rotation)."""
    absolute = os.path.abspath(path)

    def exists() -> object:
        try:
            os.stat(absolute)
        except FileNotFoundError:
            return None
        raise CheckFailed("file exists")

    def check() -> Deferred[object]:
        # A stat may wait on a slow or hung filesystem: not in the reactor.
        return in_thread(exists)

    return check


def http_check(
    uri: str,
    statuscode: int,
    timeout: float,
    headers: Mapping[str, tuple[str, ...]],
    reactor: Any,
) -> Check:
    """A C{HEAD} request to C{uri} must answer C{statuscode} within C{timeout} seconds."""
    client = HTTPClient(Agent(reactor))
    sent = Headers({name: list(values) for name, values in headers.items()})

    async def head() -> None:
        try:
            response = await client.head(uri, headers=sent, timeout=timeout, reactor=reactor)
        except Exception as error:
            raise CheckFailed(f"{uri}: error while checking: {_reason(error)}") from None
        if response.code != statuscode:
            raise CheckFailed(
                f"{uri}: downstream service returned unexpected status: {response.code}"
            )

    def check() -> Deferred[object]:
        return ensureDeferred(head())

    return check


def tcp_check(host: str, port: int, timeout: float, reactor: Any) -> Check:
    """A TCP connection to C{host}:C{port} must open within C{timeout} seconds."""
    endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def connect() -> None:
        try:
            protocol: Any = await endpoint.connect(Factory.forProtocol(Protocol))
        except Exception as error:
            raise CheckFailed(f"{addr}: connection failed: {_reason(error)}") from None
        protocol.transport.loseConnection()

    def check() -> Deferred[object]:
        return ensureDeferred(connect())

    return check


def _reason(error: BaseException | None) -> str:
    # Some Twisted errors (ResponseNeverReceived) hold their reasons in a list.
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(_reason(reason.value) for reason in reasons)
    return str(error) or type(error).__name__
