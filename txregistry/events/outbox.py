# -*- test-case-name: tests.test_events -*-
"""
The outbox: every event on local disk before it is delivered, so that a
restart or a C{kill -9} loses none (Distribution keeps its queue in memory).

Events are appended, one JSON line each, to numbered segment files in the
outbox's folder.  Appends are group-committed: while one write (and its
C{fsync}) is under way, new events gather, and the next write takes them
all, so many concurrent pushes share one C{fsync}.  Each endpoint's
position (segment, offset) is kept in a file of its own, written after each
batch it has delivered: after a crash an endpoint gets again at most the
batch it was sending (at least once; the events' ids are kept).  A segment
every endpoint has passed is deleted.

The outbox holds at most C{max_bytes} of undelivered events: an event that
would go beyond is dropped, counted in L{Outbox.dropped} and logged (once
per spell of drops, with the count when it ends), never silently.  An
event that cannot be written (a full disk) is logged; a push or delete
waiting for it fails with UNAVAILABLE (503), and nothing half written stays.
"""

from __future__ import annotations

import json
import os
import re
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from txregistry.errors import UNAVAILABLE
from txregistry.threads import ThreadPool

_log = Logger()

# A segment is closed once it holds this much; each is deleted as a whole.
SEGMENT_BYTES = 8 << 20
# How many of the last events written are kept in memory, so that an
# endpoint that keeps up reads and parses nothing.
RECENT_EVENTS = 1024
_SEGMENT = re.compile(r"events-(\d{12})\.jsonl")


def _segment_name(number: int) -> str:
    return f"events-{number:012d}.jsonl"


class Position(NamedTuple):
    """
    A place in the outbox: a segment's number and a byte offset in it (a
    tuple: two are made for each event, and compared in order).
    """

    segment: int
    offset: int


class Record:
    """
    One stored event: its JSON line and the position just after it.
    """

    __slots__ = ("after", "line")

    def __init__(self, line: bytes, after: Position) -> None:
        self.line = line
        self.after = after


class _Written:
    """One write's events, kept in memory (see L{Outbox.read})."""

    __slots__ = ("end", "lines", "start")

    def __init__(self, start: Position, end: Position, lines: list[bytes]) -> None:
        self.start = start
        self.end = end
        self.lines = lines


class _Pending:
    """Events waiting for the next group commit, and who waits for it."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.durable = False
        self.waiters: list[Deferred[None]] = []


class Outbox:
    """
    One process's outbox, in folder C{path} (created when missing).  Its
    file work runs in a thread of its own: a slow disk under the outbox does
    not hold up storage, nor storage it; and reads, writes and deletes
    happen one after another.
    """

    def __init__(self, path: str, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.dropped = 0
        self._dropping = 0
        self._pool = ThreadPool(1, "txregistry-outbox")
        self._pending = _Pending()
        self._writing = False
        self._end = Position(0, 0)
        # Each kept segment's length: the segments are these, and no other.
        self._segment_bytes: dict[int, int] = {}
        # The segments whose directory entry is on disk (written by the
        # outbox thread only).
        self._entry_synced: set[int] = set()
        # The last writes, in order, holding at least RECENT_EVENTS events
        # (see read): one entry a write; an entry an event cost 2 of the
        # 20 us an event costs the registry under a load of pulls.
        self._recent: deque[_Written] = deque()
        self._recent_events = 0
        self._listeners: list[Callable[[int], None]] = []
        self._cursors: dict[str, Position] = {}
        # The bytes from the furthest-behind cursor to the end, once counted.
        self._undelivered: int | None = None

    # -- opening -----------------------------------------------------------------

    def open(self) -> None:
        """
        Find the segments and the endpoints' positions on disk: at
        start-up, before requests are answered (it reads a few small files
        and the last segment's end).
        """
        os.makedirs(self.path, exist_ok=True)
        segments = sorted(
            int(found.group(1))
            for name in os.listdir(self.path)
            if (found := _SEGMENT.fullmatch(name)) is not None
        )
        if not segments:
            self._end = Position(1, 0)
            open(os.path.join(self.path, _segment_name(1)), "ab").close()
        else:
            last = os.path.join(self.path, _segment_name(segments[-1]))
            with open(last, "rb+") as file:
                data = file.read()
                # A line cut short by a crash was never acknowledged: drop it.
                whole = data.rfind(b"\n") + 1
                if whole != len(data):
                    file.truncate(whole)
            self._end = Position(segments[-1], whole)
        for name in os.listdir(self.path):
            if name.startswith("cursor-") and name.endswith(".json"):
                with open(os.path.join(self.path, name), "rb") as file:
                    try:
                        document = json.load(file)
                        position = Position(int(document["segment"]), int(document["offset"]))
                    except (ValueError, KeyError, TypeError):
                        continue  # a cursor is only written whole; ignore junk
                self._cursors[name[len("cursor-") : -len(".json")]] = position
        for number in segments or [self._end.segment]:
            name = os.path.join(self.path, _segment_name(number))
            self._segment_bytes[number] = os.path.getsize(name)

    @property
    def end(self) -> Position:
        """Where the next event goes."""
        return self._end

    @property
    def undelivered_bytes(self) -> int:
        """The bytes from the position of the endpoint furthest behind to the end."""
        if self._undelivered is None:
            self._undelivered = self._count_undelivered()
        return self._undelivered

    def _count_undelivered(self) -> int:
        if not self._cursors:
            return 0
        oldest = min(self._cursors.values())
        written = sum(
            size for number, size in self._segment_bytes.items() if number >= oldest.segment
        )
        return written - oldest.offset + sum(map(len, self._pending.lines))

    def register(self, endpoints: set[str]) -> None:
        """
        Keep events for C{endpoints} (the configured ones), and for no other:
        at start-up, after L{open}.  An endpoint never seen gets the events
        from now on; its position is saved at once, so that what is stored
        before it first delivers is not skipped after a restart.
        """
        for name in list(self._cursors):
            if name not in endpoints:
                del self._cursors[name]
        for name in sorted(endpoints - set(self._cursors)):
            self._cursors[name] = self._end
            self._save_cursor(name, self._end)
        self._undelivered = None

    def cursor(self, endpoint: str) -> Position:
        """Where C{endpoint} is (see L{register})."""
        return self._cursors[endpoint]

    def _save_cursor(self, endpoint: str, position: Position) -> None:
        target = os.path.join(self.path, f"cursor-{endpoint}.json")
        temporary = target + ".new"
        with open(temporary, "w") as file:
            json.dump({"segment": position.segment, "offset": position.offset}, file)
        os.replace(temporary, target)

    def on_append(self, listener: Callable[[int], None]) -> None:
        """
        Call C{listener} (on the reactor thread) after each write of new
        events, with their number.
        """
        self._listeners.append(listener)

    # -- appending ---------------------------------------------------------------

    def append(self, event: bytes, durable: bool) -> Deferred[None]:
        """
        Add C{event}, a JSON document on one line (see
        L{txregistry.events.event.encode_event}).

        @param durable: whether the returned Deferred waits until the event
            is on disk (written and C{fsync}-ed): push and delete events, so
            the registry answers only once they cannot be lost.  A pull's
            fires at once; it is written with the next group (the caller
            gathers pulls: see L{txregistry.events.notifier}, and
            L{extend}).
        @return: fires when the event is stored (or dropped at the bound).
        """
        waiter: Deferred[None] = Deferred()
        if self._add(event) and durable:
            self._pending.durable = True
            self._pending.waiters.append(waiter)
        else:
            waiter.callback(None)
        if not self._writing:
            self._schedule()
        return waiter

    def extend(self, events: list[bytes]) -> None:
        """Add C{events}, no request waiting for them (pulls), in one write."""
        for event in events:
            self._add(event)
        if not self._writing:
            self._schedule()

    def _add(self, event: bytes) -> bool:
        """Add C{event} to the next write; or drop it at the bound (false)."""
        line = event + b"\n"
        undelivered = self.undelivered_bytes
        if undelivered + len(line) > self.max_bytes:
            self.dropped += 1
            if not self._dropping:
                _log.error(
                    "notifications: the outbox is full ({size} bytes undelivered, "
                    "notifications.outbox.maxbytes {bound}); events are dropped until "
                    "endpoints catch up",
                    size=undelivered,
                    bound=self.max_bytes,
                )
            self._dropping += 1
            return False
        if self._dropping:
            _log.warn(
                "notifications: the outbox has room again; {count} events were dropped",
                count=self._dropping,
            )
            self._dropping = 0
        if self._cursors:
            self._undelivered = undelivered + len(line)
        self._pending.lines.append(line)
        return True

    def _schedule(self) -> None:
        """Start the next write, of whatever waits (pulls come gathered already)."""
        if self._pending.lines or self._pending.waiters:
            self._write_next()

    def flush(self) -> Deferred[None]:
        """Write what waits now (at shutdown); fires once it is on disk."""
        waiter: Deferred[None] = Deferred()
        self._pending.durable = True
        self._pending.waiters.append(waiter)
        if not self._writing:
            self._write_next()
        return waiter

    def _write_next(self) -> None:
        pending, self._pending = self._pending, _Pending()
        if not pending.lines:
            self._writing = False
            for waiter in pending.waiters:
                waiter.callback(None)  # a flush with nothing to write
            return
        self._writing = True
        data = b"".join(pending.lines)
        start = self._end
        if start.offset >= SEGMENT_BYTES:
            start = Position(start.segment + 1, 0)
        self._end = Position(start.segment, start.offset + len(data))
        self._segment_bytes[start.segment] = self._end.offset

        def write() -> None:
            segment = os.path.join(self.path, _segment_name(start.segment))
            try:
                with open(segment, "ab") as file:
                    file.write(data)
                    file.flush()
                    if pending.durable:
                        os.fsync(file.fileno())
                if pending.durable and start.segment not in self._entry_synced:
                    # A new segment's directory entry must survive a crash too.
                    folder = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
                    try:
                        os.fsync(folder)
                    finally:
                        os.close(folder)
                    self._entry_synced.add(start.segment)
            except OSError:
                # Nothing half written stays, for the next events to follow.
                try:
                    os.truncate(segment, start.offset)
                except OSError:
                    pass
                raise

        def written(result: object) -> object:
            self._remember(_Written(start, self._end_of(start, data), pending.lines))
            for waiter in pending.waiters:
                waiter.callback(None)
            for listener in self._listeners:
                listener(len(pending.lines))
            self._writing = False
            self._schedule()
            return result

        def failed(failure: Any) -> None:
            _log.error(
                "notifications: the outbox cannot be written ({error}); {count} events "
                "not stored, their requests refused",
                error=failure.value,
                count=len(pending.lines),
            )
            self._end = start
            self._segment_bytes[start.segment] = start.offset
            self._undelivered = None
            refusal = UNAVAILABLE(f"the notifications outbox cannot be written: {failure.value}")
            for waiter in pending.waiters:
                waiter.errback(refusal)
            self._writing = False
            self._schedule()

        self._pool.run(write).addCallbacks(written, failed)

    # -- reading -----------------------------------------------------------------

    @staticmethod
    def _end_of(start: Position, data: bytes) -> Position:
        return Position(start.segment, start.offset + len(data))

    def _remember(self, written: _Written) -> None:
        """Keep the events just written in memory, for deliveries that keep up."""
        self._recent.append(written)
        self._recent_events += len(written.lines)
        while self._recent_events - len(self._recent[0].lines) >= RECENT_EVENTS:
            self._recent_events -= len(self._recent.popleft().lines)

    def read(self, position: Position, limit: int) -> Deferred[list[Record]]:
        """
        Up to C{limit} events stored from C{position} on, as far as they are
        written, each with the position after it: from memory when they are
        among the last written, else from the segments.
        """
        recent = self._read_recent(position, limit)
        if recent is not None:
            return succeed(recent)
        # The pool has one thread: a read never meets a write half done.

        def read_now() -> list[Record]:
            records: list[Record] = []
            where = position
            while len(records) < limit:
                name = os.path.join(self.path, _segment_name(where.segment))
                try:
                    with open(name, "rb") as file:
                        file.seek(where.offset)
                        for line in file:
                            if not line.endswith(b"\n"):
                                break  # being written
                            where = Position(where.segment, where.offset + len(line))
                            records.append(Record(line, where))
                            if len(records) == limit:
                                break
                except FileNotFoundError:
                    pass
                if len(records) == limit:
                    break
                following = os.path.join(self.path, _segment_name(where.segment + 1))
                if not os.path.exists(following):
                    break
                where = Position(where.segment + 1, 0)
            return records

        return self._pool.run(read_now)

    def _read_recent(self, position: Position, limit: int) -> list[Record] | None:
        """
        What L{read} finds in memory; L{None} when C{position} is before
        the events kept there.  A position is always where an event starts.
        """
        recent = self._recent
        if (
            position.offset == self._segment_bytes.get(position.segment)
            and position.segment + 1 in self._segment_bytes
        ):
            position = Position(position.segment + 1, 0)  # a segment's end: the next's start
        if not recent or position < recent[0].start:
            return None
        records: list[Record] = []
        if position >= recent[-1].end:
            return records  # nothing written after it yet
        for written in recent:
            if written.end <= position:
                continue
            where = written.start
            for line in written.lines:
                after = Position(where.segment, where.offset + len(line))
                if where >= position:
                    records.append(Record(line, after))
                    if len(records) == limit:
                        return records
                where = after
        return records

    def delivered(self, endpoint: str, position: Position) -> Deferred[None]:
        """
        Save that C{endpoint} has delivered everything before C{position};
        delete the segments no endpoint needs any more.
        """
        self._cursors[endpoint] = position
        self._undelivered = None
        oldest = min(self._cursors.values())
        doomed = sorted(number for number in self._segment_bytes if number < oldest.segment)
        for number in doomed:
            del self._segment_bytes[number]

        def save() -> None:
            self._save_cursor(endpoint, position)
            for number in doomed:
                try:
                    os.unlink(os.path.join(self.path, _segment_name(number)))
                except FileNotFoundError:
                    continue

        return self._pool.run(save)
