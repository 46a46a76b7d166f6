"""
Notifications in the process: Distribution's event documents, the durable
outbox (group commit, positions, segments, the size bound, a crash's cut
line) and the delivery loop (order, retries, threshold and backoff,
ignored events), with a sink that records what it gets.  The webhook over
real HTTP, and the events of real pushes and pulls, are in
C{tests/test_notifications.py}.
"""

from __future__ import annotations

import errno
import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.task import Clock, deferLater
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from support import temporary_directory, wait_until
from txregistry.config.notifications import EndpointConfig, IgnoreConfig, NotificationsConfig
from txregistry.digest import Digest
from txregistry.errors import RegistryError
from txregistry.events import outbox as outbox_module
from txregistry.events.delivery import EndpointDelivery, wanted
from txregistry.events.event import (
    EncodedEvents,
    RequestRecord,
    Source,
    _Ids,
    content_target,
    deletion_target,
    encode_event,
    envelope,
    timestamp,
)
from txregistry.events.notifier import PULL_LINGER, Notifications, process_outbox_path
from txregistry.events.outbox import Outbox, Position
from txregistry.events.webhook import WebhookSinkFactory
from txregistry.interfaces import IEventSink, IEventSinkFactory

REQUEST = RequestRecord("127.0.0.1:4000", "registry:5000", "PUT", "skopeo/1.0", id="r-1")
SOURCE = Source("host", "instance")
DIGEST = Digest.of(b"manifest")


def make_event(
    action: str,
    target: Mapping[str, Any],
    request: RequestRecord,
    actor: str | None,
    source: Source,
    now: float | None = None,
) -> dict[str, Any]:
    """The document L{encode_event} encodes."""
    document: dict[str, Any] = json.loads(encode_event(action, target, request, actor, source, now))
    return document


def event(number: int, action: str = "push", media_type: str = "m") -> bytes:
    """An event as the outbox takes it, with its C{number} (for the tests to find)."""
    target = content_target("app", media_type, number, DIGEST, "http://r/v2/app")
    document = make_event(action, target, REQUEST, "alice", SOURCE)
    document["number"] = number
    return json.dumps(document).encode()


def _seconds(stamp: str) -> float:
    """The time of an event's timestamp (to the microsecond)."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    moment = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return moment.timestamp() + float("0." + (fraction or "0"))


class EventTests(SynchronousTestCase):
    """Events look as Distribution's."""

    def test_timestamp(self) -> None:
        """RFC 3339 in UTC, nanoseconds without trailing zeros, none when whole."""
        self.assertEqual(timestamp(0), "1970-01-01T00:00:00Z")
        self.assertEqual(timestamp(1.5), "1970-01-01T00:00:01.5Z")
        self.assertEqual(timestamp(1.999999999999), "1970-01-01T00:00:02Z")

    def test_ids(self) -> None:
        """Ids are distinct UUIDs of version 4's form, to the counter's last value."""
        ids = _Ids()
        ids._counter = iter([0, 1, (1 << 62) - 1, 1 << 62])
        made = [ids.next() for _ in range(4)]
        for made_id in made:
            parsed = uuid.UUID(made_id)
            self.assertEqual((parsed.version, parsed.variant), (4, uuid.RFC_4122))
            self.assertEqual(str(parsed), made_id)
        self.assertEqual(len(set(made[:3])), 3)
        self.assertEqual(made[0], made[3])  # the counter wraps at 62 bits
        self.assertTrue(made[2].endswith("-bfff-ffffffffffff"))

    def test_request_id(self) -> None:
        """A request without an id gets one when first read, the same for all its events."""
        record = RequestRecord("127.0.0.1:1", "r", "GET", "ua")
        first = make_event("pull", deletion_target("app", DIGEST), record, None, SOURCE)
        second = make_event("pull", deletion_target("app", DIGEST), record, None, SOURCE)
        self.assertEqual(first["request"]["id"], second["request"]["id"])
        self.assertEqual(uuid.UUID(record.id).version, 4)
        self.assertNotEqual(first["id"], second["id"])

    def test_push_event(self) -> None:
        """Every field Distribution's push event has, with the tag and references."""
        target = content_target(
            "app",
            "application/vnd.oci.image.manifest.v1+json",
            42,
            DIGEST,
            "http://r/v2/app/manifests/x",
            tag="v1",
            references=[{"mediaType": "c", "size": 1, "digest": "d"}],
        )
        document = make_event("push", target, REQUEST, "alice", SOURCE, now=1.0)
        self.assertEqual(
            document["target"],
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "size": 42,
                "digest": str(DIGEST),
                "length": 42,
                "repository": "app",
                "url": "http://r/v2/app/manifests/x",
                "tag": "v1",
                "references": [{"mediaType": "c", "size": 1, "digest": "d"}],
            },
        )
        self.assertEqual(document["action"], "push")
        self.assertEqual(document["timestamp"], "1970-01-01T00:00:01Z")
        self.assertEqual(
            document["request"],
            {
                "id": "r-1",
                "addr": "127.0.0.1:4000",
                "host": "registry:5000",
                "method": "PUT",
                "useragent": "skopeo/1.0",
            },
        )
        self.assertEqual(document["actor"], {"name": "alice"})
        self.assertEqual(document["source"], {"addr": "host", "instanceID": "instance"})
        self.assertNotEqual(make_event("push", target, REQUEST, None, SOURCE)["id"], document["id"])

    def test_anonymous_mount_and_delete(self) -> None:
        """No actor's name without a user; a mount names its source; a delete its digest or tag."""
        mount = content_target("app", "b", 1, DIGEST, "u", from_repository="base")
        self.assertEqual(mount["fromRepository"], "base")
        self.assertEqual(make_event("mount", mount, REQUEST, None, SOURCE)["actor"], {})
        self.assertEqual(
            deletion_target("app", DIGEST), {"digest": str(DIGEST), "repository": "app"}
        )
        self.assertEqual(deletion_target("app", tag="v1"), {"repository": "app", "tag": "v1"})

    def test_envelope(self) -> None:
        """
        The body is an object with the events, in order; events that carry
        their JSON are sent as it is, not encoded again.
        """
        self.assertEqual(
            json.loads(envelope([{"a": 1}, {"b": 2}])), {"events": [{"a": 1}, {"b": 2}]}
        )
        encoded = EncodedEvents([b'{"a":1}', b'{"b": 2, "as": "stored"}'])
        self.assertEqual(envelope(encoded), b'{"events":[{"a":1},{"b": 2, "as": "stored"}]}')

    def test_encoded_events(self) -> None:
        """A sink that reads the events as mappings gets each line parsed."""
        encoded = EncodedEvents([b'{"a":1}', b'{"b":2}', b'{"c":3}'])
        self.assertEqual(len(encoded), 3)
        self.assertEqual(encoded[1], {"b": 2})
        self.assertEqual(encoded[-1], {"c": 3})
        self.assertEqual(encoded[:2], [{"a": 1}, {"b": 2}])
        self.assertEqual(list(encoded), [{"a": 1}, {"b": 2}, {"c": 3}])
        with self.assertRaises(IndexError):
            encoded[3]

    def test_wanted(self) -> None:
        """An endpoint's ignored media types and actions filter its events."""
        endpoint = EndpointConfig(
            name="e",
            url="http://127.0.0.1/",
            ignored_media_types=("old",),
            ignore=IgnoreConfig(media_types=("skip",), actions=("pull",)),
        )
        self.assertTrue(wanted(endpoint, json.loads(event(1))))
        self.assertFalse(wanted(endpoint, json.loads(event(1, media_type="old"))))
        self.assertFalse(wanted(endpoint, json.loads(event(1, media_type="skip"))))
        self.assertFalse(wanted(endpoint, json.loads(event(1, action="pull"))))
        deletion = make_event("delete", deletion_target("app", DIGEST), REQUEST, None, SOURCE)
        self.assertTrue(wanted(endpoint, deletion))


class OutboxTests(TestCase):
    """The durable outbox."""

    def setUp(self) -> None:
        self.path = os.path.join(temporary_directory(self), "outbox")

    def opened(self, max_bytes: int = 1 << 30, endpoints: tuple[str, ...] = ("e",)) -> Outbox:
        outbox = Outbox(self.path, max_bytes)
        outbox.open()
        outbox.register(set(endpoints))
        return outbox

    async def test_durable_append_group_commit(self) -> None:
        """
        Durable appends fire once on disk; appends made while one write is
        under way share the next write and its one fsync.
        """
        synced: list[int] = []
        real_fsync = os.fsync

        def fsync(descriptor: int) -> None:
            synced.append(descriptor)
            real_fsync(descriptor)

        self.patch(outbox_module.os, "fsync", fsync)
        outbox = self.opened()
        await gatherResults([outbox.append(event(number), durable=True) for number in range(50)])
        # The first write took one event; the other 49 waited and went in one more.
        self.assertLessEqual(len(synced), 3)  # two writes, one of a new segment's folder
        records = await outbox.read(outbox.cursor("e"), 100)
        self.assertEqual([json.loads(r.line)["number"] for r in records], list(range(50)))
        outbox.register({"e", "late"})
        self.assertEqual(await outbox.read(outbox.cursor("late"), 100), [])  # from now on

    async def test_pull_does_not_wait(self) -> None:
        """A non-durable append fires at once, and is written all the same."""
        outbox = self.opened()
        appended = outbox.append(event(1, action="pull"), durable=False)
        self.assertTrue(appended.called)
        await outbox.append(event(2), durable=True)
        records = await outbox.read(Position(1, 0), 10)
        self.assertEqual([json.loads(r.line)["number"] for r in records], [1, 2])

    async def test_write_fails(self) -> None:
        """
        A write that fails (a full disk) refuses the durable events waiting
        for it with UNAVAILABLE (503), logs one line, leaves nothing half
        written, and the next events are stored after the last whole one.
        """
        logged: list[dict[str, Any]] = []
        self.patch(outbox_module, "_log", Logger(observer=logged.append))
        outbox = self.opened()
        await outbox.append(event(1), durable=True)
        real_fsync = os.fsync

        def full(descriptor: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        self.patch(outbox_module.os, "fsync", full)
        error = await self.assertFailure(outbox.append(event(2), durable=True), RegistryError)
        self.assertEqual((error.error_code.code, error.status), ("UNAVAILABLE", 503))
        self.assertEqual(len(logged), 1)
        self.assertIn("cannot be written", logged[0]["log_format"])
        self.patch(outbox_module.os, "fsync", real_fsync)
        await outbox.append(event(3), durable=True)
        records = await self.opened().read(Position(1, 0), 10)
        self.assertEqual([json.loads(r.line)["number"] for r in records], [1, 3])

    async def test_flush(self) -> None:
        """
        A flush fires once what was appended before it is written, the
        pulls too; with nothing to write it fires too.
        """
        outbox = self.opened()
        await outbox.flush()
        outbox.append(event(1, action="pull"), durable=False)
        await outbox.flush()
        again = self.opened()
        records = await again.read(Position(1, 0), 10)
        self.assertEqual([json.loads(r.line)["number"] for r in records], [1])

    async def test_positions_survive_restart(self) -> None:
        """An endpoint's saved position is where it starts after a restart."""
        outbox = self.opened()
        start = outbox.cursor("e")
        for number in range(5):
            await outbox.append(event(number), durable=True)
        records = await outbox.read(start, 2)
        await outbox.delivered("e", records[-1].after)
        again = self.opened()
        rest = await again.read(again.cursor("e"), 10)
        self.assertEqual([json.loads(r.line)["number"] for r in rest], [2, 3, 4])

    async def test_cut_line_dropped(self) -> None:
        """A line a crash cut short is removed at opening; later ones follow the whole ones."""
        outbox = self.opened()
        await outbox.append(event(1), durable=True)
        with open(os.path.join(self.path, "events-000000000001.jsonl"), "ab") as segment:
            segment.write(b'{"half')
        again = self.opened()
        await again.append(event(2), durable=True)
        records = await again.read(Position(1, 0), 10)
        self.assertEqual([json.loads(r.line)["number"] for r in records], [1, 2])

    async def test_segments_rotate_and_go(self) -> None:
        """
        Events fill several segments, read across them in order; a segment
        every endpoint has passed is deleted, and its bytes no longer count.
        """
        self.patch(outbox_module, "SEGMENT_BYTES", 1000)
        outbox = self.opened(endpoints=("a", "b"))
        start_a, start_b = outbox.cursor("a"), outbox.cursor("b")
        for number in range(20):
            await outbox.append(event(number), durable=True)
        segments = sorted(name for name in os.listdir(self.path) if name.startswith("events-"))
        self.assertGreater(len(segments), 3)
        records = await outbox.read(start_a, 100)
        self.assertEqual([json.loads(r.line)["number"] for r in records], list(range(20)))
        before = outbox.undelivered_bytes
        await outbox.delivered("a", records[-1].after)
        self.assertEqual(
            sorted(name for name in os.listdir(self.path) if name.startswith("events-")),
            segments,
        )  # b still needs them
        records_b = await outbox.read(start_b, 100)
        await outbox.delivered("b", records_b[-1].after)
        left = sorted(name for name in os.listdir(self.path) if name.startswith("events-"))
        self.assertEqual(left, segments[-1:])
        self.assertLess(outbox.undelivered_bytes, before)

    async def test_memory_reads_as_disk(self) -> None:
        """
        The last events are read from memory, from any event's position,
        across writes and segments, exactly as from the segments; from a
        position before them, or after a restart, they are read from disk.
        """
        self.patch(outbox_module, "SEGMENT_BYTES", 1500)
        self.patch(outbox_module, "RECENT_EVENTS", 12)
        outbox = self.opened()
        start = outbox.cursor("e")
        for group in range(6):  # writes of 1 to 6 events
            outbox.extend([event(group * 10 + number) for number in range(group + 1)])
            await outbox.flush()
        reads: list[str] = []
        real_run = outbox._pool.run

        def run(function: Any) -> Any:
            reads.append("disk")
            return real_run(function)

        self.patch(outbox._pool, "run", run)
        everything = await outbox.read(start, 100)
        self.assertEqual(reads, ["disk"])  # the first writes are no longer in memory
        self.assertEqual(len(everything), 21)
        again = Outbox(self.path, 1 << 30)
        again.open()
        for index, record in enumerate(everything):
            for limit in (1, 5, 100):
                reads.clear()
                expected = await again.read(record.after, limit)
                found = await outbox.read(record.after, limit)
                self.assertEqual(
                    [(r.line, r.after) for r in found], [(r.line, r.after) for r in expected]
                )
                # Kept: whole writes, the last three (15 events, from the 7th).
                self.assertEqual(reads, ["disk"] if index + 1 < 6 else [])
        self.assertEqual(await outbox.read(outbox.end, 10), [])

    async def test_bound(self) -> None:
        """At the bound, events are dropped, counted and logged; room again takes them."""
        logged: list[dict[str, Any]] = []
        self.patch(outbox_module, "_log", Logger(observer=logged.append))
        outbox = self.opened(max_bytes=3000)
        start = outbox.cursor("e")
        for number in range(20):
            await outbox.append(event(number), durable=True)
        self.assertGreater(outbox.dropped, 0)
        records = await outbox.read(start, 100)
        self.assertEqual(len(records) + outbox.dropped, 20)
        self.assertEqual(len(logged), 1)  # once per spell of drops
        self.assertIn("outbox is full", logged[0]["log_format"])
        await outbox.delivered("e", records[-1].after)
        self.assertEqual(outbox.undelivered_bytes, 0)
        await outbox.append(event(99), durable=True)
        self.assertEqual(len(logged), 2)  # the end of the spell, with its count
        self.assertEqual(logged[1]["count"], outbox.dropped)
        records = await outbox.read(records[-1].after, 100)
        self.assertEqual([json.loads(r.line)["number"] for r in records], [99])


@implementer(IEventSink)
class RecordingSink:
    """Keeps what it is given; fails the first C{failures} writes."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.batches: list[list[Mapping[str, Any]]] = []
        self.tries = 0
        self.closed = False

    def write(self, events: Sequence[Mapping[str, Any]]) -> Deferred[None]:
        self.tries += 1
        if self.failures:
            self.failures -= 1
            raise OSError("receiver down")
        self.batches.append(list(events))
        return succeed(None)

    def close(self) -> Deferred[None]:
        self.closed = True
        return succeed(None)


@implementer(IEventSinkFactory)
class RecordingSinkFactory:
    name = "recording"

    def __init__(self, failures: int = 0) -> None:
        self.sinks: list[RecordingSink] = []
        self.failures = failures

    def create(self, endpoint: Any) -> IEventSink:
        sink = RecordingSink(self.failures)
        self.sinks.append(sink)
        return sink


class DeliveryTests(TestCase):
    """One endpoint's delivery loop."""

    def setUp(self) -> None:
        self.path = os.path.join(temporary_directory(self), "outbox")
        self.outbox = Outbox(self.path, 1 << 30)
        self.outbox.open()
        self.outbox.register({"e"})

    def deliver(self, sink: RecordingSink, **options: Any) -> EndpointDelivery:
        endpoint = EndpointConfig(name="e", url="http://127.0.0.1/", **options)
        delivery = EndpointDelivery(endpoint, sink, self.outbox, reactor)
        delivery.start()
        self.addCleanup(delivery.stop)
        return delivery

    async def test_in_order_after_failures(self) -> None:
        """
        A failing sink gets the same batch again, fast below the threshold
        and every backoff above it; every event arrives, once, in order.
        """
        sink = RecordingSink(failures=4)
        delivery = self.deliver(sink, threshold=2, backoff=0.2)
        started = time.monotonic()
        for number in range(30):
            await self.outbox.append(event(number), durable=True)
        await wait_until(lambda: sum(map(len, sink.batches)) == 30)
        numbers = [e["number"] for batch in sink.batches for e in batch]
        self.assertEqual(numbers, list(range(30)))
        self.assertEqual(delivery.counters.failed, 4)
        self.assertEqual(delivery.counters.delivered, 30)
        self.assertEqual(delivery.counters.last_status, "delivered")
        # 2 quick retries (0.1 s), then 2 after the backoff (0.2 s each).
        self.assertGreaterEqual(time.monotonic() - started, 0.5)

    async def test_write_during_empty_read(self) -> None:
        """
        An event written while the delivery reads an empty outbox is
        delivered without waiting for another.
        """
        real_read = self.outbox.read
        reads: list[Deferred[Any]] = []

        def read(position: Position, limit: int) -> Deferred[Any]:
            if not reads:
                # The first read is slow: it ends empty after a write.
                reads.append(Deferred())
                return reads[0]
            return real_read(position, limit)

        self.patch(self.outbox, "read", read)
        sink = RecordingSink()
        self.deliver(sink)
        await self.outbox.append(event(1), durable=True)
        await deferLater(reactor, 0.05, lambda: None)  # its write is told meanwhile
        reads[0].callback([])
        await wait_until(lambda: bool(sink.batches), timeout=2.0)
        self.assertEqual([e["number"] for b in sink.batches for e in b], [1])

    async def test_ignored_not_sent(self) -> None:
        """Events an endpoint ignores are counted and passed over."""
        sink = RecordingSink()
        delivery = self.deliver(sink, ignore=IgnoreConfig(actions=("pull",)))
        await self.outbox.append(event(1, action="pull"), durable=True)
        await self.outbox.append(event(2), durable=True)
        await wait_until(lambda: delivery.counters.delivered == 1)
        self.assertEqual([e["number"] for batch in sink.batches for e in batch], [2])
        self.assertEqual(delivery.counters.ignored, 1)

    async def test_resumes_after_restart(self) -> None:
        """A delivery that stopped with events undelivered sends them when started again."""
        sink = RecordingSink(failures=1000)
        delivery = self.deliver(sink, threshold=1, backoff=0.05)
        for number in range(3):
            await self.outbox.append(event(number), durable=True)
        await wait_until(lambda: sink.tries >= 2)
        await delivery.stop()
        self.assertTrue(sink.closed)
        again = Outbox(self.path, 1 << 30)
        again.open()
        again.register({"e"})
        self.outbox = again
        fresh = RecordingSink()
        self.deliver(fresh)
        await wait_until(lambda: sum(map(len, fresh.batches)) == 3)
        self.assertEqual([e["number"] for b in fresh.batches for e in b], [0, 1, 2])


class NotificationsTests(TestCase):
    """The notifications of a process, from its config."""

    def config(self, **endpoint: Any) -> NotificationsConfig:
        from txregistry.config.notifications import OutboxConfig

        options = {"name": "e", "url": "http://127.0.0.1:1/", "sink": "recording", **endpoint}
        return NotificationsConfig(
            endpoints=(EndpointConfig(**options),),
            outbox=OutboxConfig(path=temporary_directory(self)),
        )

    async def test_emit_and_deliver(self) -> None:
        """Events emitted are delivered to the endpoint's sink, chosen by name."""
        factory = RecordingSinkFactory()
        notifications = Notifications(self.config(), reactor, {"recording": factory})
        notifications.open()
        notifications.start()
        self.addCleanup(notifications.stop)
        target = deletion_target("app", DIGEST)
        await notifications.emit("delete", target, REQUEST, "bob", durable=True)
        sink = factory.sinks[0]
        await wait_until(lambda: bool(sink.batches))
        delivered = sink.batches[0][0]
        self.assertEqual(delivered["action"], "delete")
        self.assertEqual(delivered["actor"], {"name": "bob"})
        self.assertEqual(notifications.counters["e"].delivered, 1)

    async def test_pulls_gathered_in_order(self) -> None:
        """
        Pulls are not written one by one: they gather, and are stored
        together, before any durable event emitted after them, with the
        time each happened; L{Notifications.stop} stores those gathering.
        """
        clock = Clock()
        config = self.config()
        notifications = Notifications(config, clock, {"recording": RecordingSinkFactory()})
        notifications.open()
        target = deletion_target("app", DIGEST)
        pulled = notifications.emit("pull", target, REQUEST, None, durable=False)
        self.assertTrue(pulled.called)
        notifications.emit("pull", target, REQUEST, None, durable=False)
        self.assertEqual(notifications.outbox.end, Position(1, 0))  # gathering
        await notifications.emit("delete", target, REQUEST, None, durable=True)
        records = await notifications.outbox.read(Position(1, 0), 10)
        self.assertEqual(
            [json.loads(r.line)["action"] for r in records], ["pull", "pull", "delete"]
        )
        self.assertEqual(clock.getDelayedCalls(), [])  # the linger was cancelled

        clock.advance(1)
        notifications.emit("pull", target, REQUEST, None, durable=False)
        clock.advance(PULL_LINGER)  # stored after the linger
        last_time = time.time()
        notifications.emit("pull", target, REQUEST, None, durable=False)
        await notifications.stop()  # stored at stop
        again = Outbox(notifications.outbox.path, 1 << 30)
        again.open()
        records = await again.read(Position(1, 0), 10)
        self.assertEqual(len(records), 5)
        stamped = json.loads(records[-1].line)["timestamp"]
        self.assertLessEqual(abs(_seconds(stamped) - last_time), 1)

    def test_unknown_sink(self) -> None:
        """An endpoint naming a sink nobody installed is a config error naming the key."""
        from txregistry.config import ConfigError

        error = self.assertRaises(
            ConfigError, Notifications, self.config(sink="kafka"), reactor, {}
        )
        self.assertEqual(error.key, "notifications.endpoints[0].sink")

    def test_disabled_endpoint_gets_nothing(self) -> None:
        """A disabled endpoint has no delivery."""
        notifications = Notifications(
            self.config(disabled=True), reactor, {"recording": RecordingSinkFactory()}
        )
        self.assertEqual(notifications.deliveries, [])

    def test_worker_outbox(self) -> None:
        """Each worker under --workers has an outbox of its own."""
        self.patch(os, "environ", {**os.environ, "TXREGISTRY_WORKER": "3"})
        self.assertEqual(process_outbox_path("/o"), "/o/worker-3")
        self.patch(os, "environ", {k: v for k, v in os.environ.items() if k != "TXREGISTRY_WORKER"})
        self.assertEqual(process_outbox_path("/o"), "/o/main")


class WebhookFactoryTests(SynchronousTestCase):
    """The webhook plugin."""

    def test_plugin(self) -> None:
        """The webhook sink is found among the plugins, and makes sinks."""
        from txregistry.events.plugins import sink_factories

        factory = sink_factories()["webhook"]
        self.assertTrue(verifyObject(IEventSinkFactory, factory))
        sink = factory.create(EndpointConfig(name="e", url="http://127.0.0.1:1/"))
        self.assertTrue(verifyObject(IEventSink, sink))

    def test_options_refused(self) -> None:
        """The webhook takes no options: one given is an error naming it."""
        from txregistry.config import ConfigError

        endpoint = EndpointConfig(name="e", url="http://127.0.0.1:1/", options={"topic": "x"})
        error = self.assertRaises(ConfigError, WebhookSinkFactory().create, endpoint)
        self.assertEqual(error.key, "options.topic")
        config = NotificationsConfig(endpoints=(endpoint,))
        error = self.assertRaises(ConfigError, Notifications, config, reactor)
        self.assertEqual(error.key, "notifications.endpoints[0].options.topic")
