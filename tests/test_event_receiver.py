"""
The notification receiver the webhook tests send to (L{event_receiver}, run
through L{receiver_support}): it records what is POSTed to it, answers 500 or
another status without recording when told to, is slow when told to, comes
back up on the same port with what it recorded, stops cleanly on SIGTERM,
and is waited for without blocking the reactor.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from typing import Any
from urllib.error import HTTPError

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from receiver_support import STOP_TIMEOUT, EventReceiver, started_receiver, wait_for_events_async
from support import temporary_directory
from txregistry.testing.client import HTTPResponse, request


def envelope(*actions: str) -> dict[str, Any]:
    """A notification envelope of one event per action."""
    return {
        "events": [{"id": str(index), "action": action} for index, action in enumerate(actions)]
    }


def post(receiver: EventReceiver, document: Any, path: str = "/events") -> HTTPResponse:
    """POST C{document} as JSON to the receiver."""
    body = json.dumps(document).encode()
    headers = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
    return request("POST", receiver.url(path), body, headers, timeout=30)


class RecordTests(SynchronousTestCase):
    """What the receiver records, and where it listens."""

    def setUp(self) -> None:
        self.receiver = started_receiver(self)

    def test_listens_on_loopback(self) -> None:
        """It listens on 127.0.0.1, at the port in its port file, with normal settings."""
        port_file = os.path.join(os.path.dirname(self.receiver.record_path), "receiver.port")
        with open(port_file) as file:
            self.assertEqual(int(file.read()), self.receiver.port)
        self.assertEqual(self.receiver.url(), f"http://127.0.0.1:{self.receiver.port}/events")
        # 127.0.0.2 is loopback too on Linux: a server bound to every address answers there.
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.2", self.receiver.port), timeout=2).close()
        self.assertEqual(self.receiver.control(), {"status": 200, "delay": 0.0, "fail_next": 0})

    def test_records_a_post(self) -> None:
        """
        A POST is answered 200 once recorded: its path, headers, body
        parsed, and the time; its events are the envelope's.
        """
        before = time.time()
        response = post(self.receiver, envelope("push", "pull"), "/hooks/one?x=1")
        after = time.time()
        self.assertEqual(response.status, 200)
        [recorded] = self.receiver.envelopes()
        self.assertEqual(recorded["path"], "/hooks/one?x=1")
        self.assertEqual(
            recorded["headers"]["Content-Type"],
            "application/vnd.docker.distribution.events.v1+json",
        )
        self.assertEqual(recorded["body"], envelope("push", "pull"))
        self.assertTrue(before <= recorded["received"] <= after)
        self.assertEqual(self.receiver.events(), envelope("push", "pull")["events"])

    def test_records_in_order(self) -> None:
        """Events of several POSTs come back in the order they were received."""
        for action in ("push", "pull", "delete"):
            self.assertEqual(post(self.receiver, envelope(action)).status, 200)
        actions = [event["action"] for event in self.receiver.wait_for_events(3, timeout=5)]
        self.assertEqual(actions, ["push", "pull", "delete"])

    def test_text_and_chunked_bodies(self) -> None:
        """A body that is not JSON is recorded as text; a chunked body whole."""
        url = self.receiver.url("/text")
        self.assertEqual(request("POST", url, b"not json").status, 200)
        chunked = iter([b'{"events": ', b'[{"action": "push"}]}'])
        self.assertEqual(request("POST", url, chunked).status, 200)
        first, second = self.receiver.envelopes()
        self.assertEqual(first["body"], "not json")
        self.assertEqual(second["headers"]["Transfer-Encoding"], "chunked")
        self.assertEqual(second["body"], {"events": [{"action": "push"}]})

    def test_not_an_envelope(self) -> None:
        """C{events} refuses a recorded body that is not an envelope."""
        post(self.receiver, {"something": "else"})
        with self.assertRaises(AssertionError) as raised:
            self.receiver.events()
        self.assertIn("something", str(raised.exception))

    def test_bad_setting(self) -> None:
        """An unknown setting or a bad value is refused with 400, and changes nothing."""
        for settings in ({"loudness": 3}, {"status": 99}, {"fail_next": 1.5}, {"delay": -1}):
            with self.assertRaises(HTTPError) as raised:
                self.receiver.control(**settings)
            self.assertEqual(raised.exception.code, 400)
        self.assertEqual(self.receiver.control(), {"status": 200, "delay": 0.0, "fail_next": 0})


class FailureTests(SynchronousTestCase):
    """The receiver told to fail, or to be slow."""

    def setUp(self) -> None:
        self.receiver = started_receiver(self)

    def test_fail_next(self) -> None:
        """C{fail_next=N}: the next N events are answered 500 and not recorded."""
        self.assertEqual(self.receiver.control(fail_next=2)["fail_next"], 2)
        self.assertEqual(post(self.receiver, envelope("lost-1")).status, 500)
        self.assertEqual(self.receiver.control()["fail_next"], 1)
        self.assertEqual(post(self.receiver, envelope("lost-2")).status, 500)
        self.assertEqual(post(self.receiver, envelope("kept")).status, 200)
        self.assertEqual([event["action"] for event in self.receiver.events()], ["kept"])
        self.assertEqual(self.receiver.control()["fail_next"], 0)

    def test_status(self) -> None:
        """C{status=N}: every event is answered N and not recorded, until C{status=200}."""
        self.assertEqual(self.receiver.control(status=503)["status"], 503)
        for action in ("lost-1", "lost-2"):
            self.assertEqual(post(self.receiver, envelope(action)).status, 503)
        self.assertEqual(self.receiver.envelopes(), [])
        self.receiver.control(status=200)
        self.assertEqual(post(self.receiver, envelope("kept")).status, 200)
        self.assertEqual([event["action"] for event in self.receiver.events()], ["kept"])

    def test_delay(self) -> None:
        """C{delay=S}: each event is answered S seconds later, and recorded."""
        self.receiver.control(delay=1.0)
        started = time.monotonic()
        response = post(self.receiver, envelope("slow"))
        elapsed = time.monotonic() - started
        self.assertEqual(response.status, 200)
        self.assertGreaterEqual(elapsed, 1.0)
        self.assertEqual([event["action"] for event in self.receiver.events()], ["slow"])
        self.receiver.control(delay=0)
        started = time.monotonic()
        post(self.receiver, envelope("fast"))
        self.assertLess(time.monotonic() - started, 1.0)


class ProcessTests(SynchronousTestCase):
    """Starting, stopping and restarting the receiver."""

    def test_restart(self) -> None:
        """
        A restarted receiver listens on the same port and keeps what it
        recorded; its settings are back to normal.  Stopped, nothing
        listens there.
        """
        receiver = started_receiver(self)
        port = receiver.port
        post(receiver, envelope("before"))
        receiver.control(status=500)
        receiver.stop()
        with self.assertRaises(OSError):
            post(receiver, envelope("while-down"))
        receiver.restart()
        self.assertEqual(receiver.port, port)
        self.assertEqual(receiver.control()["status"], 200)
        self.assertEqual(post(receiver, envelope("after")).status, 200)
        actions = [event["action"] for event in receiver.events()]
        self.assertEqual(actions, ["before", "after"])

    def test_sigterm(self) -> None:
        """
        C{stop} sends SIGTERM, and the receiver exits 0 at once, even while
        it holds an event back.
        """
        receiver = started_receiver(self)
        receiver.control(delay=30)
        outcome: list[object] = []

        def send() -> None:
            try:
                outcome.append(post(receiver, envelope("held")))
            except OSError as error:
                outcome.append(error)

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(0.5)  # the request is now held by the receiver
        process = receiver.process
        assert process is not None
        started = time.monotonic()
        receiver.stop()
        self.assertLess(time.monotonic() - started, STOP_TIMEOUT)
        self.assertEqual(process.returncode, 0)
        sender.join(10)
        [error] = outcome
        self.assertIsInstance(error, OSError)
        self.assertEqual(receiver.envelopes(), [])

    def test_start_failure(self) -> None:
        """A receiver that cannot start says why, with its output."""
        directory = temporary_directory(self)
        first = started_receiver(self, "first")
        second = EventReceiver("second")
        second.start(directory)
        self.addCleanup(second.stop)
        second.stop()
        second.port = first.port  # taken: the restart cannot bind it
        with self.assertRaises(RuntimeError) as raised:
            second.restart()
        self.assertIn("second exited with 1", str(raised.exception))
        self.assertIn("Address already in use", str(raised.exception))


class WaitTests(TestCase):
    """Waiting for events, blocking or in the reactor."""

    def test_wait_times_out(self) -> None:
        """Fewer events than asked for within the timeout: an error says how many came."""
        receiver = started_receiver(self)
        post(receiver, envelope("only"))
        started = time.monotonic()
        with self.assertRaises(AssertionError) as raised:
            receiver.wait_for_events(2, timeout=0.3)
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        self.assertIn("1 of 2 events", str(raised.exception))

    async def test_wait_in_reactor(self) -> None:
        """The reactor runs while events are waited for: what it sends arrives."""
        receiver = started_receiver(self)
        IReactorTime(reactor).callLater(0.2, post, receiver, envelope("push", "pull"))
        events = await wait_for_events_async(receiver, 2, timeout=10)
        self.assertEqual([event["action"] for event in events], ["push", "pull"])

    def test_wait_async_times_out(self) -> None:
        """The async wait keeps the given reactor's time, and fails when it runs out."""
        receiver = started_receiver(self)
        clock = Clock()
        waiting = ensureDeferred(wait_for_events_async(receiver, 1, timeout=1.0, reactor=clock))
        clock.pump([0.05] * 19)
        self.assertNoResult(waiting)
        clock.advance(0.05)
        failure = self.failureResultOf(waiting, AssertionError)
        self.assertIn("0 of 1 events", str(failure.value))
