# -*- test-case-name: tests.test_event_receiver -*-
"""
The test side of L{event_receiver}: L{EventReceiver} runs the receiver as a
process on 127.0.0.1, changes how it answers, reads what it recorded, and
stops it or brings it back up on the same port; L{wait_for_events_async}
waits for events without blocking a running reactor.

In a trial test case::

    receiver = started_receiver(self)
    ...  # configure the registry to notify receiver.url()
    events = await wait_for_events_async(receiver, 2)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import IO, Any
from urllib.parse import urlencode

from twisted.internet import reactor as global_reactor
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase

from support import temporary_directory

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "event_receiver.py")
# How often the record file is read while waiting for events.
POLL_INTERVAL = 0.05
# How long a receiver has to write its port file, and to exit on SIGTERM.
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

# Requests to the receiver go straight to 127.0.0.1, whatever *_proxy says.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EventReceiver:
    """
    The receiver as a process of its own; its files are in the folder given
    to L{start}, named after it: C{NAME.jsonl} (what it recorded),
    C{NAME.port}, and C{NAME.log} (its output).

    @ivar name: what its files and messages call it.
    @ivar port: the port it listens on, once started; kept by L{stop}.
    @ivar record_path: the file it records events in, once started.
    @ivar process: the process, once started.
    """

    def __init__(self, name: str = "receiver") -> None:
        self.name = name
        self.port = 0
        self.record_path = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._directory = ""
        self._log: IO[bytes] | None = None

    def __repr__(self) -> str:
        return f"<EventReceiver {self.name} on port {self.port or 'not chosen'}>"

    # -- the process -----------------------------------------------------------------

    def start(self, directory: str) -> None:
        """
        Start the receiver on a free port, recording in C{directory}, and
        wait until it listens.  What an earlier receiver recorded there
        under the same name is kept.

        @raise RuntimeError: it is already running, or it exited or wrote
            no port within C{START_TIMEOUT} seconds (the message ends with
            its output).
        """
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self._directory = directory
        self.record_path = self._file("jsonl")
        self._spawn(0)

    def restart(self) -> None:
        """Stop the receiver if it runs, and start it again on the same port and record."""
        if not self.port:
            raise RuntimeError(f"{self.name} was never started")
        self.stop()
        self._spawn(self.port)

    def stop(self) -> None:
        """
        Stop the receiver: C{SIGTERM}, then C{SIGKILL} after C{STOP_TIMEOUT}
        seconds.  Stopping a stopped receiver does nothing.
        """
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def running(self) -> bool:
        """Whether the process is started and has not exited."""
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        """What the process printed (each request, any traceback)."""
        try:
            with open(self._file("log"), encoding="utf-8", errors="replace") as log:
                return log.read()
        except OSError:
            return ""

    def _file(self, suffix: str) -> str:
        return os.path.join(self._directory, f"{self.name}.{suffix}")

    def _spawn(self, port: int) -> None:
        port_path = self._file("port")
        # The port file of an earlier run must not be taken for this one's.
        if os.path.exists(port_path):
            os.remove(port_path)
        self._log = open(self._file("log"), "ab")
        command = [sys.executable, SCRIPT, "--port", str(port)]
        command += ["--record", self.record_path, "--control-port-file", port_path]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(port_path):
            returncode = self.process.poll()
            if returncode is not None:
                self.stop()
                raise RuntimeError(f"{self.name} exited with {returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.name} wrote no port within {START_TIMEOUT}s:\n{self.output()}"
                )
            time.sleep(POLL_INTERVAL)
        with open(port_path, encoding="utf-8") as file:
            self.port = int(file.read())

    # -- talking to it ---------------------------------------------------------------

    def url(self, path: str = "/events") -> str:
        """C{http://127.0.0.1:PORT} and C{path}: where events are to be POSTed."""
        if not self.port:
            raise RuntimeError(f"{self.name} was never started")
        return f"http://127.0.0.1:{self.port}{path}"

    def control(self, **settings: float) -> dict[str, Any]:
        """
        Change how the receiver answers the events that arrive next
        (C{status}, C{delay}, C{fail_next}: see L{event_receiver}); with no
        settings, only read them.  Returns every setting.

        @raise urllib.error.HTTPError: an unknown setting or a bad value (400).
        """
        query = f"?{urlencode(settings)}" if settings else ""
        with _direct.open(self.url("/_control") + query, timeout=10) as response:
            document: dict[str, Any] = json.load(response)
        return document

    # -- what it recorded ------------------------------------------------------------

    def envelopes(self) -> list[dict[str, Any]]:
        """
        Every POST recorded so far, in the order received: C{path},
        C{headers}, C{body} (parsed JSON, or text), C{received}
        (C{time.time()}).
        """
        try:
            with open(self.record_path, encoding="utf-8") as record:
                text = record.read()
        except FileNotFoundError:
            return []
        # What follows the last newline is a line still being written.
        return [json.loads(line) for line in text.split("\n")[:-1]]

    def events(self) -> list[dict[str, Any]]:
        """
        The events of every recorded envelope (a body C{{"events": [...]}}),
        in order.

        @raise AssertionError: a recorded body is not an envelope.
        """
        events: list[dict[str, Any]] = []
        for envelope in self.envelopes():
            body = envelope["body"]
            assert isinstance(body, dict) and isinstance(body.get("events"), list), (
                f"{self.name} recorded a body that is not an envelope: {body!r}"
            )
            events.extend(body["events"])
        return events

    def wait_for_events(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """
        Block until at least C{count} events are recorded, reading the
        record every C{POLL_INTERVAL} seconds; all the events recorded.

        @raise AssertionError: fewer arrived within C{timeout} seconds.
        """
        deadline = time.monotonic() + timeout
        while len(events := self.events()) < count:
            if time.monotonic() >= deadline:
                raise AssertionError(_too_few(self, events, count, timeout))
            time.sleep(POLL_INTERVAL)
        return events


async def wait_for_events_async(
    receiver: EventReceiver,
    count: int,
    timeout: float = 30.0,
    reactor: IReactorTime | None = None,
) -> list[dict[str, Any]]:
    """
    L{EventReceiver.wait_for_events} for code running in C{reactor} (the
    global one by default): the reactor runs between two readings.

    @raise AssertionError: fewer arrived within C{timeout} seconds (of
        C{reactor.seconds()}).
    """
    clock = reactor if reactor is not None else IReactorTime(global_reactor)
    deadline = clock.seconds() + timeout
    while len(events := receiver.events()) < count:
        if clock.seconds() >= deadline:
            raise AssertionError(_too_few(receiver, events, count, timeout))
        await deferLater(clock, POLL_INTERVAL, lambda: None)
    return events


def _too_few(
    receiver: EventReceiver, events: list[dict[str, Any]], count: int, timeout: float
) -> str:
    state = "running" if receiver.running else "NOT RUNNING"
    return (
        f"{len(events)} of {count} events arrived at {receiver.name} ({state}) "
        f"within {timeout}s: {[event.get('action') for event in events]}"
    )


def started_receiver(case: SynchronousTestCase, name: str = "receiver") -> EventReceiver:
    """A receiver started in a temporary folder of its own, stopped after C{case}."""
    receiver = EventReceiver(name)
    receiver.start(temporary_directory(case, f"txregistry-{name}-"))
    case.addCleanup(receiver.stop)
    return receiver
