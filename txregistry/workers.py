# -*- test-case-name: tests.test_workers -*-
"""
Several registry processes on one port (C{twist registry --workers N}).

A registry process is stateless (uploads live in storage, and share their
signed state through C{http.secret}), so N processes can answer one port
together.  Each binds its own socket with C{SO_REUSEPORT} and the kernel
spreads new connections across them evenly, which a shared accept queue
does not (one process may take every connection of a burst).  The first
process supervises the others: it starts them with its own command line and
environment, restarts one that dies, and stops them when it stops.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorProcess,
    IReactorSocket,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import ProcessProtocol, ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txregistry.config import ConfigError

# Set in the environment of the processes a supervisor starts.
WORKER_VARIABLE = "TXREGISTRY_WORKER"
RESPAWN_DELAY = 1.0
STOP_TIMEOUT = 30.0

_log = Logger()


@dataclass(frozen=True)
class TCPAddress:
    """Where workers listen: a host (empty for all interfaces) and a fixed port."""

    host: str
    port: int

    @classmethod
    def from_endpoint(cls, description: str) -> TCPAddress:
        """
        Read a C{tcp:PORT[:interface=HOST]} endpoint description.

        @raise ConfigError: for any other kind of endpoint, or port 0.
        """
        parts = description.replace(r"\:", "\0").split(":")
        if parts[0] != "tcp" or len(parts) < 2:
            raise ConfigError("--workers", f"needs a TCP address, not {description!r}")
        port_text = ""
        host = ""
        for index, option in enumerate(parts[1:]):
            key, equals, value = option.partition("=")
            if not equals and index == 0:
                port_text = key
            elif key == "port":
                port_text = value
            elif key == "interface":
                host = value.replace("\0", ":")
        if not port_text.isdigit() or int(port_text) == 0:
            raise ConfigError("--workers", "needs a fixed port, not port 0")
        return cls(host, int(port_text))


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    """A TCP server endpoint whose socket shares its port (C{SO_REUSEPORT})."""

    def __init__(self, reactor: IReactorSocket, address: TCPAddress, backlog: int = 128) -> None:
        self.reactor = reactor
        self.address = address
        self.backlog = backlog

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Bind, listen, and hand the socket to the reactor."""
        family = socket.AF_INET6 if ":" in self.address.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind((self.address.host, self.address.port))
            listener.listen(self.backlog)
            listener.setblocking(False)
            # The reactor takes a duplicate of the descriptor.
            port = self.reactor.adoptStreamPort(
                listener.fileno(), family, cast(ServerFactory, factory)
            )
            return succeed(port)
        finally:
            listener.close()


class _Worker(ProcessProtocol):
    def __init__(self, supervisor: WorkerSupervisor, number: int) -> None:
        self.supervisor = supervisor
        self.number = number
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)
        self.supervisor.worker_ended(self, reason)


class WorkerSupervisor(Service):
    """
    Starts C{count} worker processes running C{command}, restarts any that
    dies while the service runs, and stops them all when it stops.
    """

    def __init__(
        self,
        reactor: IReactorProcess,
        clock: IReactorTime,
        command: Sequence[str],
        environment: dict[str, str],
        count: int,
    ) -> None:
        self.reactor = reactor
        self.clock = clock
        self.command = list(command)
        self.environment = environment
        self.count = count
        self.workers: dict[int, _Worker] = {}

    def startService(self) -> None:
        """Start every worker."""
        super().startService()
        for number in range(1, self.count + 1):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        if not self.running:
            return
        worker = _Worker(self, number)
        self.workers[number] = worker
        self.reactor.spawnProcess(
            worker,
            self.command[0],
            self.command,
            env={**self.environment, WORKER_VARIABLE: str(number)},
            childFDs={1: 1, 2: 2},
        )

    def worker_ended(self, worker: _Worker, reason: Failure) -> None:
        """A worker exited: restart it unless we are stopping."""
        if self.workers.get(worker.number) is worker:
            del self.workers[worker.number]
        if self.running:
            _log.warn(
                "worker {number} ended ({reason}); restarting it",
                number=worker.number,
                reason=reason.value if not reason.check(ProcessDone) else "exit 0",
            )
            self.clock.callLater(RESPAWN_DELAY, self._spawn, worker.number)

    def stopService(self) -> Deferred[object]:
        """Ask every worker to stop (SIGTERM), then kill the stragglers."""
        super().stopService()
        endings = []
        for worker in list(self.workers.values()):
            endings.append(worker.ended)
            _signal(worker, "TERM")

        def kill_stragglers() -> None:
            for worker in list(self.workers.values()):
                _signal(worker, "KILL")

        stragglers = self.clock.callLater(STOP_TIMEOUT, kill_stragglers)

        def stopped(result: object) -> object:
            if stragglers.active():
                stragglers.cancel()
            return result

        done: Deferred[object] = DeferredList(endings).addBoth(stopped)
        return done


def _signal(worker: _Worker, name: str) -> None:
    try:
        if worker.transport is not None:
            worker.transport.signalProcess(name)
    except ProcessExitedAlready:
        pass


def worker_command(argv: Sequence[str]) -> list[str]:
    """The command line that runs this registry again, as a worker."""
    return [sys.executable, "-m", "twisted", *_registry_arguments(argv)]


def _registry_arguments(argv: Sequence[str]) -> list[str]:
    # Everything from the `registry` sub-command on, minus --workers.
    arguments = list(argv[1:])
    start = arguments.index("registry") if "registry" in arguments else 0
    kept: list[str] = []
    skip = False
    for argument in arguments[start:]:
        if skip:
            skip = False
            continue
        if argument in ("--workers", "-w"):
            skip = True
            continue
        if argument.startswith("--workers="):
            continue
        kept.append(argument)
    return kept


def is_worker() -> bool:
    """Whether this process was started by a supervisor."""
    return WORKER_VARIABLE in os.environ
