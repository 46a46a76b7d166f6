"""
The pull-through cache's expiry of content (L{txregistry.proxy.expiry}):
the schedule on a deterministic clock over the in-memory driver, its file in
Distribution's format, and what an expiry removes.
"""

from __future__ import annotations

import calendar
import json
import re
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from gc_support import Content
from txregistry.digest import Digest
from txregistry.drivers.base import ValidatingDriver
from txregistry.drivers.errors import StorageUnavailableError
from txregistry.drivers.inmemory import InMemoryDriver
from txregistry.errors import MANIFEST_UNKNOWN, UNAVAILABLE, RegistryError
from txregistry.proxy import expiry, schedule_file
from txregistry.proxy.expiry import ExpiryScheduler, expire_content
from txregistry.proxy.schedule_file import BLOB, MANIFEST, STATE_PATH, ExpiryEntry, expiry_key
from txregistry.registry import paths
from txregistry.registry.blobs import LinkedBlobStore
from txregistry.registry.manifests import ManifestStore, TagStore
from txregistry.registry.repository import Registry

# 2024-05-01T12:00:00Z: the clock starts there, so the file holds real dates.
NOW = 1714564800.0
DAY = 86400.0
A = Digest.of(b"a")
B = Digest.of(b"b")
C = Digest.of(b"c")
# RFC 3339 with at most nine fractional digits, in UTC, as Go writes time.Now().UTC().
GO_UTC_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,8}[1-9])?Z")


class RecordingDriver(InMemoryDriver):
    """An in-memory driver that counts writes and fails operations on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[str] = []
        self.failing: dict[str, int] = {}

    def _failure(self, operation: str) -> Deferred[Any] | None:
        if self.failing.get(operation, 0) > 0:
            self.failing[operation] -= 1
            return fail(StorageUnavailableError(f"{operation} refused"))
        return None

    def get_content(self, path: str) -> Deferred[bytes]:
        return self._failure("get_content") or super().get_content(path)

    def put_content(self, path: str, content: bytes) -> Deferred[None]:
        failed = self._failure("put_content")
        if failed is not None:
            return failed
        self.puts.append(path)
        return super().put_content(path, content)

    def delete(self, path: str) -> Deferred[None]:
        return self._failure("delete") or super().delete(path)


class Expirations:
    """An on_expire that records its entries; each ends when the test says."""

    def __init__(self) -> None:
        self.entries: list[ExpiryEntry] = []
        self.pending: list[Deferred[None]] = []
        self.hold = False
        self.failures = 0

    def __call__(self, entry: ExpiryEntry) -> Deferred[None]:
        self.entries.append(entry)
        if self.failures:
            self.failures -= 1
            return fail(StorageUnavailableError("bucket on fire"))
        if self.hold:
            pending: Deferred[None] = Deferred()
            self.pending.append(pending)
            return pending
        return succeed(None)

    def keys(self) -> list[str]:
        return [entry.key for entry in self.entries]


def go_time(text: str) -> float:
    """An RFC 3339 time in epoch seconds, the fraction to whole microseconds."""
    found = re.fullmatch(r"(.{19})(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    assert found is not None, text
    seconds = calendar.timegm(
        (
            int(found.group(1)[:4]),
            int(found.group(1)[5:7]),
            int(found.group(1)[8:10]),
            int(found.group(1)[11:13]),
            int(found.group(1)[14:16]),
            int(found.group(1)[17:19]),
        )
    )
    zone = found.group(3)
    if zone != "Z":
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        seconds -= offset if zone[0] == "+" else -offset
    return seconds + int((found.group(2) or "0").ljust(6, "0")[:6]) / 1e6


class SchedulerTestCase(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.memory = RecordingDriver()
        self.driver = ValidatingDriver(self.memory)
        self.expired = Expirations()
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def scheduler(self, **options: Any) -> ExpiryScheduler:
        made = ExpiryScheduler(self.driver, self.clock, self.expired, **options)
        self.addCleanup(made.stop)
        return made

    async def started(self, **options: Any) -> ExpiryScheduler:
        made = self.scheduler(**options)
        await made.start()
        return made

    def logged(self) -> list[str]:
        return [formatEvent(event) for event in self.events]

    async def stored(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(await self.driver.get_content(STATE_PATH))
        return document

    async def store(self, document: object) -> None:
        await self.driver.put_content(STATE_PATH, json.dumps(document).encode())


class FormatTests(SchedulerTestCase):
    """The file is Distribution's: its path, field names, time format and types."""

    async def test_written_as_distribution_writes_it(self) -> None:
        scheduler = await self.started()
        scheduler.add("library/alpine", A, BLOB, 7 * DAY + 0.25)
        scheduler.add("library/alpine", B, MANIFEST, DAY)
        self.clock.advance(5)
        document = await self.stored()
        blob, manifest = f"library/alpine@{A}", f"library/alpine@{B}"
        self.assertEqual(sorted(document), sorted([blob, manifest]))
        self.assertEqual(
            document[blob],
            {"Key": blob, "ExpiryData": "2024-05-08T12:00:00.25Z", "EntryType": 0},
        )
        self.assertEqual(
            document[manifest],
            {"Key": manifest, "ExpiryData": "2024-05-02T12:00:00Z", "EntryType": 1},
        )
        for entry in document.values():
            self.assertRegex(entry["ExpiryData"], GO_UTC_TIME)
        # Go's encoder: map keys sorted, fields in their declared order, no spaces.
        raw = await self.driver.get_content(STATE_PATH)
        self.assertEqual(raw, json.dumps(document, separators=(",", ":")).encode())
        self.assertEqual(list(document), sorted(document))
        self.assertEqual(list(document[blob]), ["Key", "ExpiryData", "EntryType"])

    async def test_reads_what_distribution_writes(self) -> None:
        """Go's time.Now() in a zone, nanoseconds, and a whole second."""
        manifest = f"library/ubuntu@{A}"
        blob = f"library/ubuntu@{B}"
        other = f"team/app@{C}"
        # As json.Marshal(map[string]*schedulerEntry) writes it.
        raw = (
            "{"
            f'"{manifest}":{{"Key":"{manifest}",'
            '"ExpiryData":"2024-05-08T14:00:00.123456789+02:00","EntryType":1},'
            f'"{blob}":{{"Key":"{blob}","ExpiryData":"2024-05-03T09:30:00Z","EntryType":0}},'
            f'"{other}":{{"Key":"{other}",'
            '"ExpiryData":"2024-04-30T20:00:00.5-05:00","EntryType":0}'
            "}"
        )
        await self.driver.put_content(STATE_PATH, raw.encode())
        scheduler = await self.started()
        self.assertEqual(len(scheduler), 3)
        self.assertEqual(scheduler.due(manifest), go_time("2024-05-08T12:00:00.123456Z"))
        self.assertEqual(scheduler.due(blob), go_time("2024-05-03T09:30:00Z"))
        self.assertEqual(scheduler.due(other), go_time("2024-05-01T01:00:00.5Z"))
        self.assertEqual(self.expired.entries, [])
        # The one due at 01:00 UTC on the 1st is due at once.
        self.clock.advance(0)
        self.assertEqual(
            self.expired.entries,
            [ExpiryEntry("team/app", C, BLOB, go_time("2024-05-01T01:00:00.5Z"))],
        )
        # Written back, an entry keeps the time as Distribution wrote it.
        scheduler.add("team/app", A, BLOB, DAY)
        self.clock.advance(5)
        document = await self.stored()
        self.assertEqual(document[manifest]["ExpiryData"], "2024-05-08T14:00:00.123456789+02:00")
        self.assertEqual(document[manifest]["EntryType"], 1)
        self.assertEqual(sorted(document), sorted([manifest, blob, f"team/app@{A}"]))

    async def test_round_trip(self) -> None:
        """A time read back is the time written, to the microsecond."""
        scheduler = await self.started()
        scheduler.add("r", A, BLOB, 1.000001)
        scheduler.add("r", B, BLOB, 1 / 3)
        await scheduler.stop()
        again = await self.started()
        self.assertEqual(again.due(expiry_key("r", A)), scheduler.due(expiry_key("r", A)))
        self.assertEqual(again.due(expiry_key("r", B)), round(NOW + 1 / 3, 6))
        self.assertEqual(
            (await self.stored())[f"r@{A}"]["ExpiryData"], "2024-05-01T12:00:01.000001Z"
        )

    async def test_null_file_is_empty(self) -> None:
        """What Go writes for a nil map."""
        await self.driver.put_content(STATE_PATH, b"null")
        scheduler = await self.started()
        self.assertEqual(len(scheduler), 0)
        self.assertEqual([text for text in self.logged() if "cannot be read" in text], [])

    async def test_field_names_ignore_case(self) -> None:
        """As Go's decoder matches them."""
        key = f"r@{A}"
        await self.store({key: {"key": key, "expirydata": "2024-05-02T00:00:00Z", "entrytype": 1}})
        scheduler = await self.started()
        self.assertEqual(scheduler.due(key), go_time("2024-05-02T00:00:00Z"))


class CorruptStateTests(SchedulerTestCase):
    """A file that cannot be read is logged and taken as empty; nothing crashes."""

    async def check_taken_as_empty(self, content: bytes) -> None:
        await self.driver.put_content(STATE_PATH, content)
        scheduler = await self.started()
        self.assertEqual(len(scheduler), 0)
        self.assertTrue(
            any("expiry schedule /scheduler-state.json cannot be read" in t for t in self.logged()),
            self.logged(),
        )
        # The next save replaces it.
        scheduler.add("r", A, BLOB, DAY)
        self.clock.advance(5)
        self.assertEqual(list(await self.stored()), [f"r@{A}"])

    async def test_not_json(self) -> None:
        await self.check_taken_as_empty(b'{"r@sha256:')

    async def test_not_utf8(self) -> None:
        await self.check_taken_as_empty(b"\xff\xfe{}")

    async def test_empty_file(self) -> None:
        await self.check_taken_as_empty(b"")

    async def test_not_an_object(self) -> None:
        await self.check_taken_as_empty(b"[1, 2]")

    async def test_nested_too_deep(self) -> None:
        await self.check_taken_as_empty(b"[" * 100000 + b"]" * 100000)

    async def test_bad_entries_dropped(self) -> None:
        """Each unreadable entry is skipped, counted in one log line, and not written back."""
        good = f"r@{A}"
        when = "2024-05-02T00:00:00Z"
        await self.store(
            {
                good: {"Key": good, "ExpiryData": when, "EntryType": 0},
                "a": "not an object",
                "b": {"Key": f"r@{B}", "ExpiryData": when, "EntryType": 2},
                "c": {"Key": f"r@{B}", "ExpiryData": when, "EntryType": True},
                "d": {"Key": f"r@{B}", "ExpiryData": when, "EntryType": [1]},
                "e": {"Key": f"r@{B}", "ExpiryData": "2024-05-02 00:00:00", "EntryType": 0},
                "f": {"Key": f"r@{B}", "ExpiryData": "2024-02-30T00:00:00Z", "EntryType": 0},
                "g": {"Key": f"r@{B}", "ExpiryData": "2024-05-02T24:00:00Z", "EntryType": 0},
                "h": {"Key": f"r@{B}", "ExpiryData": "2024-05-02T00:00:00+25:00", "EntryType": 0},
                "i": {"Key": f"r@{B}", "ExpiryData": 1714564800, "EntryType": 0},
                "j": {"Key": "r@sha256:short", "ExpiryData": when, "EntryType": 0},
                "k": {"Key": f"Upper/Case@{B}", "ExpiryData": when, "EntryType": 0},
                "l": {"Key": f"../../etc@{B}", "ExpiryData": when, "EntryType": 0},
                "m": {"Key": 5, "ExpiryData": when, "EntryType": 0},
                "n": {"Key": str(B), "ExpiryData": when, "EntryType": 0},
            }
        )
        scheduler = await self.started()
        self.assertEqual(len(scheduler), 1)
        self.assertIn(good, scheduler)
        self.assertTrue(
            any(text.startswith("14 entries of the expiry schedule") for text in self.logged()),
            self.logged(),
        )
        scheduler.add("r", C, BLOB, DAY)
        self.clock.advance(5)
        self.assertEqual(sorted(await self.stored()), sorted([good, f"r@{C}"]))

    async def test_key_from_map_when_missing(self) -> None:
        """An entry without its Key is known by its key in the map."""
        key = f"r@{A}"
        await self.store({key: {"ExpiryData": "2024-05-02T00:00:00Z", "EntryType": 0}})
        scheduler = await self.started()
        self.assertIn(key, scheduler)


class ExpiryTests(SchedulerTestCase):
    async def test_expires_when_due_and_not_before(self) -> None:
        scheduler = await self.started()
        scheduler.add("library/alpine", A, BLOB, 60)
        self.clock.advance(59.999)
        self.assertEqual(self.expired.entries, [])
        self.clock.advance(0.001)
        self.assertEqual(self.expired.entries, [ExpiryEntry("library/alpine", A, BLOB, NOW + 60)])
        self.assertNotIn(f"library/alpine@{A}", scheduler)
        self.assertEqual(len(scheduler), 0)
        self.clock.advance(5)
        self.assertEqual(await self.stored(), {})

    async def test_in_order_of_expiry(self) -> None:
        scheduler = await self.started()
        scheduler.add("r", A, BLOB, 30)
        scheduler.add("r", B, MANIFEST, 10)
        scheduler.add("r", C, BLOB, 20)
        self.clock.pump([10, 10, 10])
        self.assertEqual(self.expired.keys(), [f"r@{B}", f"r@{C}", f"r@{A}"])
        self.assertEqual([entry.kind for entry in self.expired.entries], [MANIFEST, BLOB, BLOB])

    async def test_adding_again_pushes_back(self) -> None:
        scheduler = await self.started()
        scheduler.add("r", A, BLOB, 60)
        self.clock.advance(50)
        scheduler.add("r", A, BLOB, 60)
        self.assertEqual(scheduler.due(f"r@{A}"), NOW + 110)
        self.clock.advance(10)
        self.assertEqual(self.expired.entries, [])
        self.clock.advance(49.9)
        self.assertEqual(self.expired.entries, [])
        self.clock.advance(0.1)
        self.assertEqual(self.expired.keys(), [f"r@{A}"])
        self.clock.advance(1000)
        self.assertEqual(len(self.expired.entries), 1)

    async def test_adding_again_brings_forward(self) -> None:
        """As Distribution's add: the new time replaces the old, earlier or not."""
        scheduler = await self.started()
        scheduler.add("r", A, BLOB, 600)
        scheduler.add("r", A, MANIFEST, 60)
        self.clock.advance(60)
        self.assertEqual(self.expired.entries, [ExpiryEntry("r", A, MANIFEST, NOW + 60)])

    async def test_one_timer_for_many_entries(self) -> None:
        """A hundred thousand entries, one timer (and the save's)."""
        scheduler = await self.started()
        for number in range(100_000):
            scheduler.add("r", Digest.of(b"%d" % number), BLOB, 1000 + number)
        self.assertEqual(len(scheduler), 100_000)
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)
        self.clock.advance(1000)
        self.assertEqual(len(self.expired.entries), 1)
        await scheduler.stop()

    async def test_heap_bounded(self) -> None:
        """Pushing entries back again and again leaves no more than a few in the heap."""
        scheduler = await self.started()
        for number in range(1000):
            scheduler.add("r", Digest.of(b"%d" % number), BLOB, 1000)
        for _ in range(20):
            for number in range(1000):
                scheduler.add("r", Digest.of(b"%d" % number), BLOB, 2000)
        self.assertLessEqual(len(scheduler._heap), 2 * 1000 + 1024)
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)
        self.clock.advance(1999)
        self.assertEqual(self.expired.entries, [])
        self.clock.advance(1)
        self.assertEqual(len(self.expired.entries), 1000)

    async def test_discard(self) -> None:
        scheduler = await self.started()
        scheduler.add("r", A, BLOB, 60)
        scheduler.add("r", B, BLOB, 60)
        self.clock.advance(5)
        self.assertTrue(scheduler.discard("r", A))
        self.assertFalse(scheduler.discard("r", A))
        self.assertFalse(scheduler.discard("r", C))
        self.clock.advance(5)
        self.assertEqual(list(await self.stored()), [f"r@{B}"])
        self.clock.advance(60)
        self.assertEqual(self.expired.keys(), [f"r@{B}"])

    async def test_discarding_the_last_stops_the_timer(self) -> None:
        scheduler = await self.started()
        scheduler.add("r", A, BLOB, 60)
        self.clock.advance(5)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        scheduler.discard("r", A)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)  # the save's, not the expiry's
        self.clock.advance(5)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(await self.stored(), {})

    async def test_add_checks_its_arguments(self) -> None:
        scheduler = self.scheduler()
        with self.assertRaises(RuntimeError):
            scheduler.add("r", A, BLOB, 60)
        await scheduler.start()
        with self.assertRaises(ValueError):
            scheduler.add("r", A, "layer", 60)
        with self.assertRaises(ValueError):
            scheduler.add("r", A, BLOB, 1e12)
        with self.assertRaises(ValueError):
            scheduler.add("r", A, BLOB, float("nan"))
        with self.assertRaises(RegistryError):
            scheduler.add("Not/Valid", A, BLOB, 60)
        self.assertEqual(len(scheduler), 0)
        with self.assertRaises(RuntimeError):
            await scheduler.start()
        await scheduler.stop()
        with self.assertRaises(RuntimeError):
            scheduler.add("r", A, BLOB, 60)
        with self.assertRaises(RuntimeError):
            await scheduler.start()

    def test_at_least_one_at_a_time(self) -> None:
        with self.assertRaises(ValueError):
            ExpiryScheduler(self.driver, self.clock, self.expired, max_concurrent=0)


class FailureTests(SchedulerTestCase):
    async def test_failure_logged_and_retried(self) -> None:
        scheduler = await self.started(retry_delay=30)
        scheduler.add("r", A, BLOB, 10)
        self.expired.failures = 1
        self.clock.advance(10)
        self.assertEqual(len(self.expired.entries), 1)
        self.assertIn(f"Expiring blob r@{A} failed; trying again in 30 s", self.logged())
        failures = [event for event in self.events if "log_failure" in event]
        self.assertEqual(len(failures), 1)
        self.assertEqual(len(self.flushLoggedErrors(StorageUnavailableError)), 1)
        self.assertEqual(scheduler.due(f"r@{A}"), NOW + 40)
        self.clock.advance(29.9)
        self.assertEqual(len(self.expired.entries), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(self.expired.entries), 2)
        self.assertNotIn(f"r@{A}", scheduler)

    async def test_failing_again_and_again(self) -> None:
        scheduler = await self.started(retry_delay=60)
        scheduler.add("r", A, BLOB, 0)
        self.expired.failures = 3
        self.clock.pump([0, 60, 60, 60])
        self.assertEqual(len(self.expired.entries), 4)
        self.assertEqual(len(self.flushLoggedErrors(StorageUnavailableError)), 3)
        self.assertEqual(len(scheduler), 0)

    async def test_raising_on_expire(self) -> None:
        """An on_expire that raises before its first wait counts as failing."""

        async def broken(entry: ExpiryEntry) -> None:
            raise KeyError(entry.key)

        scheduler = ExpiryScheduler(self.driver, self.clock, broken, retry_delay=5)
        await scheduler.start()
        scheduler.add("r", A, BLOB, 1)
        self.clock.advance(1)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
        self.assertEqual(scheduler.due(f"r@{A}"), NOW + 6)
        await scheduler.stop()

    async def test_added_again_while_expiring(self) -> None:
        """Content fetched again while its expiry runs keeps the new schedule."""
        scheduler = await self.started()
        self.expired.hold = True
        scheduler.add("r", A, BLOB, 10)
        self.clock.advance(10)
        scheduler.add("r", A, BLOB, 100)
        self.clock.advance(1)
        self.expired.pending[0].callback(None)
        self.assertEqual(scheduler.due(f"r@{A}"), NOW + 110)
        self.clock.advance(99)
        self.assertEqual(len(self.expired.entries), 2)
        self.expired.pending[1].callback(None)
        self.assertEqual(len(scheduler), 0)

    async def test_added_again_while_failing(self) -> None:
        """A failure does not turn the new schedule into a retry."""
        scheduler = await self.started(retry_delay=5)
        self.expired.hold = True
        scheduler.add("r", A, BLOB, 10)
        self.clock.advance(10)
        scheduler.add("r", A, BLOB, 100)
        self.expired.pending[0].errback(StorageUnavailableError("down"))
        self.flushLoggedErrors(StorageUnavailableError)
        self.assertEqual(scheduler.due(f"r@{A}"), NOW + 110)
        self.clock.advance(50)
        self.assertEqual(len(self.expired.entries), 1)


class ConcurrencyTests(SchedulerTestCase):
    async def test_bounded(self) -> None:
        scheduler = await self.started(max_concurrent=16)
        self.expired.hold = True
        for number in range(40):
            scheduler.add("r", Digest.of(b"%d" % number), BLOB, 10)
        self.clock.advance(10)
        self.assertEqual(len(self.expired.pending), 16)
        self.clock.advance(100)  # no timer runs more while all are busy
        self.assertEqual(len(self.expired.pending), 16)
        self.expired.pending[0].callback(None)
        self.assertEqual(len(self.expired.pending), 17)
        for pending in self.expired.pending[1:16]:
            pending.callback(None)
        self.assertEqual(len(self.expired.pending), 32)
        for pending in self.expired.pending[16:]:
            pending.callback(None)
        self.assertEqual(len(self.expired.pending), 40)
        for pending in self.expired.pending[32:]:
            pending.callback(None)
        self.assertEqual(len(scheduler), 0)
        self.assertEqual(len(set(self.expired.keys())), 40)

    async def test_many_due_at_start(self) -> None:
        """Thousands due when the scheduler starts: sixteen at a time, all in the end."""
        when = "2024-04-01T00:00:00Z"
        keys = [f"r@{Digest.of(b'%d' % number)}" for number in range(3000)]
        await self.store({key: {"Key": key, "ExpiryData": when, "EntryType": 0} for key in keys})
        self.expired.hold = True
        scheduler = await self.started()
        self.assertEqual(self.expired.entries, [])
        self.clock.advance(0)
        self.assertEqual(len(self.expired.pending), 16)
        done = 0
        while done < len(self.expired.pending):
            self.expired.pending[done].callback(None)
            done += 1
            self.assertLessEqual(done + 16 - len(self.expired.pending), 16)
        self.assertEqual(sorted(self.expired.keys()), sorted(keys))
        self.assertEqual(len(scheduler), 0)

    async def test_synchronous_expirations(self) -> None:
        """Expirations that end at once do not nest: thousands in one step."""
        scheduler = await self.started(max_concurrent=2)
        for number in range(5000):
            scheduler.add("r", Digest.of(b"%d" % number), BLOB, 1)
        self.clock.advance(1)
        self.assertEqual(len(self.expired.entries), 5000)
        self.assertEqual(len(scheduler), 0)


class SavingTests(SchedulerTestCase):
    async def test_debounced(self) -> None:
        """At most one write every save_delay seconds, and only with changes."""
        scheduler = await self.started(save_delay=5)
        self.assertEqual(self.memory.puts, [])
        scheduler.add("r", A, BLOB, DAY)
        self.clock.advance(1)
        scheduler.add("r", B, BLOB, DAY)
        self.clock.advance(3.9)
        self.assertEqual(self.memory.puts, [])
        self.clock.advance(0.1)
        self.assertEqual(self.memory.puts, [STATE_PATH])
        self.assertEqual(len(await self.stored()), 2)
        self.clock.advance(60)
        self.assertEqual(len(self.memory.puts), 1)  # nothing changed since
        for number in range(79):
            scheduler.add("r", Digest.of(b"%d" % number), BLOB, DAY)
            self.clock.advance(0.125)
        # 9.875 seconds of changes: one write after 5 s, the next one pending.
        self.assertEqual(len(self.memory.puts), 2)
        self.clock.advance(0.125)
        self.assertEqual(len(self.memory.puts), 3)
        self.assertEqual(len(await self.stored()), 81)
        self.clock.advance(60)
        self.assertEqual(len(self.memory.puts), 3)

    async def test_expiry_saved(self) -> None:
        scheduler = await self.started()
        scheduler.add("r", A, BLOB, 10)
        scheduler.add("r", B, BLOB, DAY)
        self.clock.advance(5)
        self.assertEqual(len(await self.stored()), 2)
        self.clock.advance(5)
        self.clock.advance(5)
        self.assertEqual(list(await self.stored()), [f"r@{B}"])
        await scheduler.stop()

    async def test_failed_save_retried(self) -> None:
        scheduler = await self.started()
        scheduler.add("r", A, BLOB, DAY)
        self.memory.failing["put_content"] = 1
        self.clock.advance(5)
        self.assertIn(
            "Saving the expiry schedule /scheduler-state.json failed; trying again in 5.0 s",
            self.logged(),
        )
        self.assertEqual(len(self.flushLoggedErrors(StorageUnavailableError)), 1)
        self.clock.advance(5)
        self.assertEqual(list(await self.stored()), [f"r@{A}"])

    async def test_failed_write_keeps_removals(self) -> None:
        """An expiry that could not be saved is saved with the next write."""
        scheduler = await self.started()
        scheduler.add("r", A, BLOB, 10)
        scheduler.add("r", B, BLOB, DAY)
        self.clock.advance(5)
        self.clock.advance(5)  # A expires
        self.memory.failing["put_content"] = 1
        self.clock.advance(5)
        self.assertEqual(len(self.flushLoggedErrors(StorageUnavailableError)), 1)
        self.assertEqual(len(await self.stored()), 2)
        self.clock.advance(5)
        self.assertEqual(list(await self.stored()), [f"r@{B}"])
        self.assertEqual(len(scheduler), 1)

    async def test_removed_while_merging(self) -> None:
        """A stored entry this process removes while the merge runs is not taken back."""
        held: list[Deferred[None]] = []
        run = expiry._run

        def held_once(big: bool, function: Any, *args: Any) -> Deferred[Any]:
            if held:
                return run(big, function, *args)
            release: Deferred[None] = Deferred()
            held.append(release)
            return release.addCallback(lambda _: function(*args))

        scheduler = await self.started()
        self.patch(expiry, "_run", held_once)
        key = f"r@{A}"
        # Another process stores A; this one saves, and its merge takes a while.
        await self.store({key: {"Key": key, "ExpiryData": "2024-05-09T00:00:00Z", "EntryType": 0}})
        scheduler.add("r", B, BLOB, DAY)
        self.clock.advance(5)
        self.assertEqual(len(held), 1)
        # Meanwhile A is fetched here, and discarded.
        scheduler.add("r", A, BLOB, 10 * DAY)
        scheduler.discard("r", A)
        held[0].callback(None)
        self.assertNotIn(key, scheduler)
        self.assertEqual(sorted(await self.stored()), sorted([key, f"r@{B}"]))
        self.clock.advance(5)
        self.assertEqual(list(await self.stored()), [f"r@{B}"])
        self.assertNotIn(key, scheduler)

    async def test_failed_read_before_save_retried(self) -> None:
        """Removals that could not be saved are kept for the next save."""
        scheduler = await self.started()
        scheduler.add("r", A, BLOB, 10)
        scheduler.add("r", B, BLOB, DAY)
        self.clock.advance(5)
        self.memory.failing["get_content"] = 1
        self.clock.advance(5)  # A expires
        self.clock.advance(5)  # the save fails
        self.assertEqual(len(self.flushLoggedErrors(StorageUnavailableError)), 1)
        self.assertEqual(len(await self.stored()), 2)
        self.clock.advance(5)
        self.assertEqual(list(await self.stored()), [f"r@{B}"])

    async def test_own_file_not_decoded_again(self) -> None:
        """A file as this process left it is not decoded; one another process wrote is."""
        decoded: list[int] = []
        real = schedule_file.decode

        def counted(content: bytes | None, ours: Any) -> Any:
            decoded.append(len(content or b""))
            return real(content, ours)

        self.patch(schedule_file, "decode", counted)
        scheduler = await self.started()
        self.assertEqual(decoded, [0])  # no file yet
        scheduler.add("r", A, BLOB, DAY)
        self.clock.advance(5)
        scheduler.add("r", B, BLOB, DAY)
        self.clock.advance(5)
        self.assertEqual(len(decoded), 2)  # the first save, of a missing file
        other = f"r@{C}"
        document = await self.stored()
        document[other] = {"Key": other, "ExpiryData": "2024-05-09T00:00:00Z", "EntryType": 0}
        await self.store(document)
        scheduler.discard("r", A)
        self.clock.advance(5)
        self.assertEqual(len(decoded), 3)
        self.assertEqual(sorted(await self.stored()), sorted([f"r@{B}", other]))
        self.assertIn(other, scheduler)

    async def test_stop_waits_and_saves(self) -> None:
        scheduler = await self.started()
        self.expired.hold = True
        scheduler.add("r", A, BLOB, 1)
        scheduler.add("r", B, BLOB, DAY)
        self.clock.advance(1)
        stopping = Deferred.fromCoroutine(scheduler.stop())
        self.assertNoResult(stopping)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.expired.pending[0].callback(None)
        self.successResultOf(stopping)
        self.assertEqual(list(await self.stored()), [f"r@{B}"])
        self.clock.advance(DAY)
        self.assertEqual(len(self.expired.entries), 1)

    async def test_stop_waits_for_a_save(self) -> None:
        class SlowDriver(RecordingDriver):
            waiting: list[Deferred[None]] = []

            def put_content(self, path: str, content: bytes) -> Deferred[None]:
                written: Deferred[None] = Deferred()
                self.waiting.append(written)
                written.addCallback(lambda _: InMemoryDriver.put_content(self, path, content))
                return written

        slow = SlowDriver()
        scheduler = ExpiryScheduler(slow, self.clock, self.expired)
        await scheduler.start()
        scheduler.add("r", A, BLOB, DAY)
        self.clock.advance(5)
        self.assertEqual(len(slow.waiting), 1)
        scheduler.add("r", B, BLOB, DAY)
        self.clock.advance(5)  # no second write while the first is under way
        self.assertEqual(len(slow.waiting), 1)
        stopping = Deferred.fromCoroutine(scheduler.stop())
        self.assertNoResult(stopping)
        slow.waiting[0].callback(None)
        self.assertEqual(len(slow.waiting), 2)  # the change made meanwhile
        slow.waiting[1].callback(None)
        self.successResultOf(stopping)
        self.assertEqual(len(json.loads(await slow.get_content(STATE_PATH))), 2)

    async def test_failed_save_at_stop_logged(self) -> None:
        scheduler = await self.started()
        scheduler.add("r", A, BLOB, DAY)
        self.memory.failing["put_content"] = 1
        await scheduler.stop()
        self.assertEqual(len(self.flushLoggedErrors(StorageUnavailableError)), 1)

    async def test_stop_without_changes_writes_nothing(self) -> None:
        scheduler = await self.started()
        await scheduler.stop()
        await scheduler.stop()
        self.assertEqual(self.memory.puts, [])


class RestartTests(SchedulerTestCase):
    async def test_stopped_while_starting(self) -> None:
        class SlowDriver(RecordingDriver):
            reading: list[Deferred[None]] = []

            def get_content(self, path: str) -> Deferred[bytes]:
                read: Deferred[None] = Deferred()
                self.reading.append(read)
                return read.addCallback(lambda _: InMemoryDriver.get_content(self, path))

        slow = SlowDriver()
        scheduler = ExpiryScheduler(slow, self.clock, self.expired)
        starting = Deferred.fromCoroutine(scheduler.start())
        stopping = Deferred.fromCoroutine(scheduler.stop())
        self.successResultOf(stopping)
        slow.reading[0].callback(None)
        self.successResultOf(starting)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        with self.assertRaises(RuntimeError):
            scheduler.add("r", A, BLOB, 1)

    async def test_schedule_kept(self) -> None:
        first = await self.started()
        first.add("r", A, BLOB, 100)
        first.add("r", B, MANIFEST, 200)
        await first.stop()
        self.clock.advance(50)
        second = await self.started()
        self.assertEqual(second.due(f"r@{A}"), NOW + 100)
        self.clock.advance(49)
        self.assertEqual(self.expired.entries, [])
        self.clock.advance(1)
        self.assertEqual(self.expired.entries, [ExpiryEntry("r", A, BLOB, NOW + 100)])
        self.clock.advance(100)
        self.assertEqual(self.expired.keys(), [f"r@{A}", f"r@{B}"])

    async def test_due_at_start_expire_soon(self) -> None:
        first = await self.started()
        first.add("r", A, BLOB, 100)
        first.add("r", B, BLOB, 100000)
        await first.stop()
        self.clock.advance(1000)
        second = await self.started()
        self.assertEqual(self.expired.entries, [])  # not within start()
        self.clock.advance(0)
        self.assertEqual(self.expired.keys(), [f"r@{A}"])
        self.assertEqual(len(second), 1)

    async def test_storage_unreadable_at_start(self) -> None:
        """Logged; the stored schedule is merged in at the next save, retried until it is."""
        first = await self.started()
        first.add("r", A, BLOB, 100)
        await first.stop()
        self.memory.failing["get_content"] = 2
        second = await self.started()
        self.assertIn("Reading the expiry schedule /scheduler-state.json failed", self.logged())
        self.assertEqual(len(second), 0)
        self.clock.advance(5)  # the save's read fails too
        self.assertEqual(len(self.flushLoggedErrors(StorageUnavailableError)), 2)
        self.assertEqual(len(second), 0)
        self.clock.advance(5)
        self.assertEqual(second.due(f"r@{A}"), NOW + 100)
        self.assertEqual(list(await self.stored()), [f"r@{A}"])
        self.clock.advance(90)
        self.assertEqual(self.expired.keys(), [f"r@{A}"])

    async def test_large_schedule_in_a_thread(self) -> None:
        """A large file is decoded, merged and encoded off the reactor thread."""
        calls: list[str] = []
        real = expiry.in_thread

        def counted(function: Any, *args: Any) -> Any:
            calls.append(function.__name__)
            return real(function, *args)

        self.patch(expiry, "in_thread", counted)
        first = await self.started()
        for number in range(6000):
            first.add("library/some-image", Digest.of(b"%d" % number), BLOB, DAY + number)
        await first.stop()
        self.assertEqual(calls, ["merge"])
        self.assertGreater(len(await self.driver.get_content(STATE_PATH)), 1 << 20)
        second = await self.started()
        self.assertEqual(calls, ["merge", "merge"])
        self.assertEqual(len(second), 6000)
        self.assertEqual(second.due(f"library/some-image@{Digest.of(b'5999')}"), NOW + DAY + 5999)
        small = await self.started()
        small.discard("library/some-image", Digest.of(b"1"))
        await small.stop()
        self.assertEqual(len(await self.stored()), 5999)


class SharedStorageTests(SchedulerTestCase):
    """Two processes over one storage merge their schedules when they save."""

    async def test_entries_of_both_kept(self) -> None:
        one = await self.started()
        two = await self.started()
        one.add("r", A, BLOB, 100)
        two.add("r", B, BLOB, 200)
        self.clock.advance(5)
        self.assertEqual(sorted(await self.stored()), sorted([f"r@{A}", f"r@{B}"]))
        # Each adopted the other's entry when it saved (the first to save at
        # its next save, which a change brings about).
        self.assertEqual(two.due(f"r@{A}"), NOW + 100)
        one.add("r", C, BLOB, 300)
        self.clock.advance(5)
        self.assertEqual(one.due(f"r@{B}"), NOW + 200)
        self.assertEqual(len(await self.stored()), 3)

    async def test_later_expiry_kept(self) -> None:
        one = await self.started()
        two = await self.started()
        one.add("r", A, BLOB, 100)
        self.clock.advance(5)
        self.clock.advance(20)
        two.add("r", A, BLOB, 100)  # fetched again by the other
        self.clock.advance(5)
        self.assertEqual(go_time((await self.stored())[f"r@{A}"]["ExpiryData"]), NOW + 125)
        one.add("r", B, BLOB, 1000)
        self.clock.advance(5)
        self.assertEqual(one.due(f"r@{A}"), NOW + 125)
        self.assertEqual(go_time((await self.stored())[f"r@{A}"]["ExpiryData"]), NOW + 125)
        self.clock.advance(90)
        self.assertEqual(self.expired.keys(), [f"r@{A}", f"r@{A}"])  # both, at the later time

    async def test_expired_dropped_though_the_other_wrote_it(self) -> None:
        one = await self.started()
        two = await self.started()
        one.add("r", A, BLOB, 10)
        two.add("r", B, BLOB, DAY)
        self.clock.advance(5)  # both saved: A and B stored
        two.discard("r", B)
        self.clock.advance(5)  # A expires in both; two saves without B
        self.clock.advance(5)  # both save
        self.assertEqual(await self.stored(), {})
        self.assertEqual(len(one), 0)
        self.assertEqual(len(two), 0)

    async def test_pushed_back_after_removal_kept(self) -> None:
        """An entry this process removed, stored again later by another, stays."""
        one = await self.started()
        one.add("r", A, BLOB, 10)
        self.clock.advance(10)  # saved, then expired here
        self.assertEqual(self.expired.keys(), [f"r@{A}"])
        other = ExpiryScheduler(self.driver, self.clock, self.expired)
        await other.start()
        other.add("r", A, BLOB, 100)
        await other.stop()
        self.clock.advance(5)  # one saves its removal
        self.assertEqual(go_time((await self.stored())[f"r@{A}"]["ExpiryData"]), NOW + 110)
        self.assertEqual(one.due(f"r@{A}"), NOW + 110)


class ExpireContentTests(TestCase):
    def setUp(self) -> None:
        self.memory = RecordingDriver()
        self.driver = ValidatingDriver(self.memory)
        self.content = Content(self.driver)
        self.registry = Registry(self.driver)

    async def test_manifest(self) -> None:
        """Its revision and the tags pointing at it go; its blobs and other tags stay."""
        content = self.content
        digest = await content.image("library/alpine", "one", tag="latest")
        await self.registry.repository("library/alpine").tags.tag("3", digest)
        other = await content.image("library/alpine", "two", tag="edge")
        await content.image("library/other", "one", tag="latest")
        await expire_content(self.registry, ExpiryEntry("library/alpine", digest, MANIFEST, NOW))
        self.assertFalse(await content.has_manifest("library/alpine", digest))
        tags = self.registry.repository("library/alpine").tags
        self.assertEqual(await tags.all(), ["edge"])
        self.assertEqual(await tags.get("edge"), other)
        self.assertTrue(await content.has_manifest("library/other", digest))
        self.assertTrue(await content.stored(digest))  # its bytes stay for the collector

    async def test_manifest_gone(self) -> None:
        await expire_content(self.registry, ExpiryEntry("library/alpine", A, MANIFEST, NOW))
        digest = await self.content.image("r", "one")
        entry = ExpiryEntry("r", digest, MANIFEST, NOW)
        await expire_content(self.registry, entry)
        await expire_content(self.registry, entry)
        self.assertFalse(await self.content.has_manifest("r", digest))

    async def test_manifest_without_its_bytes(self) -> None:
        """A revision whose bytes were deleted (a blob expiry of the same digest) still goes."""
        digest = await self.content.image("r", "one", tag="v1")
        await self.driver.delete(paths.blob_data(digest))
        await expire_content(self.registry, ExpiryEntry("r", digest, MANIFEST, NOW))
        self.assertFalse(await self.content.has_manifest("r", digest))
        self.assertFalse(await self.registry.repository("r").tags.all())

    async def test_blob(self) -> None:
        """Its link and its bytes go, other repositories' links stay."""
        digest = await self.content.blob("library/alpine", b"layer")
        await self.registry.repository("library/other").blobs.link(digest)
        kept = await self.content.blob("library/alpine", b"another layer")
        await expire_content(self.registry, ExpiryEntry("library/alpine", digest, BLOB, NOW))
        self.assertFalse(await self.content.linked("library/alpine", digest))
        self.assertFalse(await self.content.stored(digest))
        self.assertTrue(await self.content.linked("library/other", digest))
        self.assertTrue(await self.content.linked("library/alpine", kept))
        self.assertTrue(await self.content.stored(kept))

    async def test_blob_gone(self) -> None:
        await expire_content(self.registry, ExpiryEntry("r", A, BLOB, NOW))
        digest = await self.content.blob("r", b"layer")
        await self.driver.delete(paths.layer_link("r", digest))
        await expire_content(self.registry, ExpiryEntry("r", digest, BLOB, NOW))
        self.assertFalse(await self.content.stored(digest))
        linked = await self.content.blob("r", b"other layer")
        await self.driver.delete(paths.blob_data(linked))
        await expire_content(self.registry, ExpiryEntry("r", linked, BLOB, NOW))
        self.assertFalse(await self.content.linked("r", linked))

    async def test_storage_failure_raised(self) -> None:
        """A failure that is not content being gone fails the expiry, to be retried."""
        digest = await self.content.blob("r", b"layer")
        self.memory.failing["delete"] = 1
        with self.assertRaises(StorageUnavailableError):
            await expire_content(self.registry, ExpiryEntry("r", digest, BLOB, NOW))
        await expire_content(self.registry, ExpiryEntry("r", digest, BLOB, NOW))
        self.assertFalse(await self.content.stored(digest))

    async def test_tag_removed_meanwhile(self) -> None:
        """A tag that goes between being found and being removed is no error."""
        digest = await self.content.image("r", "one", tag="v1")

        async def gone(store: TagStore, tag: str) -> None:
            await original(store, tag)
            raise MANIFEST_UNKNOWN(f"unknown tag {tag}")

        original = TagStore.untag
        self.patch(TagStore, "untag", gone)
        await expire_content(self.registry, ExpiryEntry("r", digest, MANIFEST, NOW))
        self.assertFalse(await self.registry.repository("r").tags.all())

    async def test_other_registry_errors_raised(self) -> None:
        """Only content being gone is success: another error fails the expiry."""

        async def unavailable(*args: object) -> None:
            raise UNAVAILABLE("try later")

        digest = await self.content.image("r", "one", tag="v1")
        layer = await self.content.blob("r", b"layer")
        for cls, method, entry in [
            (ManifestStore, "delete", ExpiryEntry("r", digest, MANIFEST, NOW)),
            (TagStore, "untag", ExpiryEntry("r", digest, MANIFEST, NOW)),
            (LinkedBlobStore, "unlink", ExpiryEntry("r", layer, BLOB, NOW)),
        ]:
            original = getattr(cls, method)
            setattr(cls, method, unavailable)
            try:
                with self.assertRaises(RegistryError) as raised:
                    await expire_content(self.registry, entry)
                self.assertIs(raised.exception.error_code, UNAVAILABLE)
            finally:
                setattr(cls, method, original)
        self.assertTrue(await self.content.stored(layer))

    async def test_unknown_kind(self) -> None:
        with self.assertRaises(ValueError):
            await expire_content(self.registry, ExpiryEntry("r", A, "layer", NOW))

    async def test_through_the_scheduler(self) -> None:
        """The scheduler over expire_content: content fetched a week ago is gone."""
        clock = Clock()
        clock.advance(NOW)
        digest = await self.content.image("library/alpine", "one", tag="latest")
        layer = await self.content.blob("library/alpine", b"layer")

        def on_expire(entry: ExpiryEntry) -> Deferred[None]:
            return Deferred.fromCoroutine(expire_content(self.registry, entry))

        scheduler = ExpiryScheduler(self.driver, clock, on_expire)
        await scheduler.start()
        scheduler.add("library/alpine", digest, MANIFEST, 7 * DAY)
        scheduler.add("library/alpine", layer, BLOB, 7 * DAY)
        clock.advance(7 * DAY)
        self.assertFalse(await self.content.has_manifest("library/alpine", digest))
        self.assertFalse(await self.content.stored(layer))
        await scheduler.stop()
        self.assertEqual(json.loads(await self.driver.get_content(STATE_PATH)), {})
