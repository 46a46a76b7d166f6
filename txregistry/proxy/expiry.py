# -*- test-case-name: tests.test_proxy_expiry -*-
"""
The expiry of a pull-through cache's content, as Distribution's proxy
scheduler does it (C{registry/proxy/scheduler/scheduler.go}): each manifest
and blob fetched from the upstream is scheduled to be removed a time to
live after it was last fetched; L{expire_content} removes it.

The schedule is kept in storage in Distribution's own file, at
L{STATE_PATH}, so a Distribution proxy's storage keeps its schedule when
txregistry serves it, and the other way round;
L{txregistry.proxy.schedule_file} describes its format, and decodes,
encodes and merges it.

One timer waits for the earliest entry (a heap of entries with lazy
deletion), whatever the schedule's size; expirations run a bounded number
at a time, so thousands due at start-up do not all hit storage at once; one
that fails is retried later.  The file is written at most once every
C{save_delay} seconds, while there are changes to write; once it is large,
it is read, merged and encoded in a thread, and a file as this process last
read or wrote it (its SHA-256 says so) is not decoded again.

Several processes may share one storage.  A save reads the stored file and
merges: per key the later expiry is kept, and the entries this process
expired or discarded since its last save are dropped (unless pushed back
since); entries stored by others are adopted, so any process expires them
should their own process be gone.  Storage offers no compare-and-swap, so a
race remains: two processes saving at the same moment each read the file
before the other wrote it, and the later write loses what only the earlier
wrote.  An entry lost that way stays in its process's memory and is written
again with that process's next save (lost for good only if that process
ends first: its content then stays cached, as if it had no time to live);
an expired entry written back by the other is adopted and expired again,
which finds the content gone and succeeds.  A process also learns of another's pushing an entry
back only when it next saves, and may expire that content at the older time:
it is then fetched from the upstream again, a cache miss and no error.
Distribution's own scheduler writes the file without reading it: sharing
storage with a running Distribution proxy drops what txregistry scheduled
whenever Distribution saves.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from heapq import heapify, heappop, heappush
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from txregistry.cache import REVISION
from txregistry.digest import Digest
from txregistry.drivers.base import delete_many
from txregistry.drivers.errors import PathNotFoundError
from txregistry.errors import BLOB_UNKNOWN, MANIFEST_UNKNOWN, RegistryError
from txregistry.names import check_repository_name
from txregistry.proxy.schedule_file import (
    BLOB,
    ENTRY_TYPES,
    KINDS,
    LAST_EXPIRY,
    MANIFEST,
    STATE_PATH,
    ExpiryEntry,
    Merged,
    Slot,
    expiry_key,
    merge,
    microseconds,
    parse_key,
    slot_at,
)
from txregistry.registry import paths
from txregistry.registry.repository import Registry, Repository
from txregistry.threads import in_thread

if TYPE_CHECKING:
    from txregistry.interfaces import IStorageDriver

_log = Logger()
T = TypeVar("T")

# Past these, the file is decoded, merged and encoded in a thread.
_THREAD_BYTES = 1 << 20
_THREAD_ENTRIES = 4096


class ExpiryScheduler:
    """
    Calls C{on_expire} for each scheduled entry once it is due, and keeps
    the schedule in storage at L{STATE_PATH}.

    @ivar save_delay: the least time between two writes of the file, in
        seconds; a change is written within it.
    @ivar retry_delay: how long after a failed expiry it is tried again.
    @ivar max_concurrent: how many expirations may run at once.
    """

    def __init__(
        self,
        driver: IStorageDriver,
        clock: IReactorTime,
        on_expire: Callable[[ExpiryEntry], Awaitable[None]],
        save_delay: float = 5.0,
        *,
        retry_delay: float = 60.0,
        max_concurrent: int = 16,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.save_delay = save_delay
        self.retry_delay = retry_delay
        self.max_concurrent = max_concurrent
        self._driver = driver
        self._clock = clock
        self._on_expire = on_expire
        self._entries: dict[str, Slot] = {}
        # (expires, key) of every entry, and of entries since replaced or
        # removed, which are skipped when they come up.
        self._heap: list[tuple[float, str]] = []
        self._running: dict[str, Deferred[bool]] = {}
        # Keys expired or discarded since the last save, with the expiry
        # they had: the stored entries of these keys due no later are gone.
        self._removed: dict[str, float] = {}
        self._dirty = False
        # The fingerprint of the file as this process last read or wrote it.
        self._known: bytes | None = None
        self._started = False
        self._stopping = False
        self._pumping = False
        self._timer: IDelayedCall | None = None
        self._save_timer: IDelayedCall | None = None
        self._save_running = False
        self._saving: Deferred[None] | None = None

    # -- the schedule --------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def due(self, key: str) -> float | None:
        """When the entry of C{key} (see L{expiry_key}) is due, or L{None} if none is."""
        slot = self._entries.get(key)
        return None if slot is None else slot.expires

    def add(self, repository: str, digest: Digest, kind: str, ttl: float) -> None:
        """
        Schedule the content to expire C{ttl} seconds from now, replacing
        the entry's earlier expiry, sooner or later (as Distribution does).

        @param kind: L{BLOB} or L{MANIFEST}.
        @raise ValueError: for another kind, or a C{ttl} beyond year 9999.
        @raise RegistryError: NAME_INVALID for an invalid repository name.
        @raise RuntimeError: before L{start} or after L{stop}.
        """
        if kind not in ENTRY_TYPES:
            raise ValueError(f"kind must be {BLOB!r} or {MANIFEST!r}, not {kind!r}")
        if not self._started or self._stopping:
            raise RuntimeError("the expiry scheduler is not running")
        check_repository_name(repository)
        expires = self._clock.seconds() + ttl
        if not math.isfinite(expires) or not 0 <= expires < LAST_EXPIRY:
            raise ValueError(f"an expiry {ttl} s from now cannot be stored")
        key = expiry_key(repository, digest)
        slot = slot_at(expires, ENTRY_TYPES[kind])
        self._entries[key] = slot
        heappush(self._heap, (slot.expires, key))
        self._compact()
        self._mark_dirty()
        self._arm_timer()

    def discard(self, repository: str, digest: Digest) -> bool:
        """
        Unschedule the content, without expiring it (it was deleted another
        way, say).  An expiry of it already running still ends.

        @return: whether it was scheduled.
        """
        key = expiry_key(repository, digest)
        slot = self._entries.pop(key, None)
        if slot is None:
            return False
        self._note_removed(key, slot)
        self._arm_timer()
        return True

    def _note_removed(self, key: str, slot: Slot) -> None:
        self._removed[key] = max(slot.expires, self._removed.get(key, slot.expires))
        self._mark_dirty()

    def _compact(self) -> None:
        # Replaced entries leave their old place in the heap behind; drop
        # them all once they outnumber the live ones.
        if len(self._heap) > 2 * len(self._entries) + 1024:
            self._heap = [(slot.expires, key) for key, slot in self._entries.items()]
            heapify(self._heap)

    # -- starting and stopping -----------------------------------------------

    async def start(self) -> None:
        """
        Read the stored schedule, then expire what is due.  A missing file
        is an empty schedule; an unreadable one is logged and taken as
        empty (and replaced at the next save).  When storage cannot be read,
        that is logged, and the stored schedule is merged in at the next
        save, which is retried until it succeeds.

        @raise RuntimeError: when started before.
        """
        if self._started or self._stopping:
            raise RuntimeError("the expiry scheduler was started before")
        self._started = True
        # An entry added meanwhile waits for this merge to be saved.
        self._save_running = True
        try:
            await self._sync(write=False)
        except Exception:
            _log.failure("Reading the expiry schedule {path} failed", path=STATE_PATH)
            self._dirty = True
        finally:
            self._save_running = False
        if self._stopping:
            return
        if self._dirty:
            self._schedule_save()
        # What is due already starts on the reactor's next turn, not in here.
        self._arm_timer()

    async def stop(self) -> None:
        """
        Stop expiring: cancel the timers, wait for the expirations running,
        and save the schedule if it changed.  A failed save is logged.
        """
        self._stopping = True
        for timer in (self._timer, self._save_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._timer = self._save_timer = None
        if self._saving is not None:
            await self._saving
        while self._running:
            await DeferredList(list(self._running.values()))
        if self._started and (self._dirty or self._removed):
            await self._save()

    # -- expiring ------------------------------------------------------------

    def _stale(self, expires: float, key: str) -> bool:
        slot = self._entries.get(key)
        return slot is None or slot.expires != expires or key in self._running

    def _pump(self) -> None:
        """Start the due expirations there is room for, then wait for the next."""
        if self._pumping or not self._started or self._stopping:
            return
        self._pumping = True
        try:
            # Entries are due at whole microseconds; so is now, for the
            # timer's float arithmetic may land just short of one.
            now = microseconds(self._clock.seconds()) / 1_000_000
            heap = self._heap
            while heap and len(self._running) < self.max_concurrent:
                expires, key = heap[0]
                if self._stale(expires, key):
                    heappop(heap)
                elif expires <= now:
                    heappop(heap)
                    self._begin(key, self._entries[key])
                else:
                    break
                heap = self._heap  # an expiry ending at once may compact it
        finally:
            self._pumping = False
        self._arm_timer()

    def _arm_timer(self) -> None:
        """Have the timer fire when the earliest entry is due, if one may start."""
        while self._heap and self._stale(*self._heap[0]):
            heappop(self._heap)
        idle = not self._started or self._stopping or len(self._running) >= self.max_concurrent
        timer = self._timer
        if idle or not self._heap:
            if timer is not None and timer.active():
                timer.cancel()
            self._timer = None
            return
        due = self._heap[0][0]
        if timer is not None and timer.active():
            if timer.getTime() <= due:
                return  # at worst early: it finds nothing due and waits again
            timer.cancel()
        self._timer = self._clock.callLater(max(0.0, due - self._clock.seconds()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._pump()

    def _begin(self, key: str, slot: Slot) -> None:
        repository, digest = parse_key(key)
        entry = ExpiryEntry(repository, digest, KINDS[slot.entry_type], slot.expires)
        running = ensureDeferred(self._call(entry))
        self._running[key] = running
        running.addCallback(self._ended, key, slot)

    async def _call(self, entry: ExpiryEntry) -> bool:
        try:
            await self._on_expire(entry)
        except Exception:
            _log.failure(
                "Expiring {kind} {key} failed; trying again in {delay} s",
                kind=entry.kind,
                key=entry.key,
                delay=self.retry_delay,
            )
            return False
        return True

    def _ended(self, expired: bool, key: str, slot: Slot) -> bool:
        del self._running[key]
        current = self._entries.get(key)
        if current is slot:
            if expired:
                del self._entries[key]
                self._note_removed(key, slot)
            else:
                retry = slot_at(self._clock.seconds() + self.retry_delay, slot.entry_type)
                self._entries[key] = retry
                heappush(self._heap, (retry.expires, key))
        elif current is not None:
            # Added again while it ran: its place in the heap was skipped.
            heappush(self._heap, (current.expires, key))
        self._pump()
        return expired

    # -- saving --------------------------------------------------------------

    def _mark_dirty(self) -> None:
        self._dirty = True
        self._schedule_save()

    def _schedule_save(self) -> None:
        if (
            self._save_timer is None
            and not self._save_running
            and self._started
            and not self._stopping
        ):
            self._save_timer = self._clock.callLater(self.save_delay, self._save_soon)

    def _save_soon(self) -> None:
        self._save_timer = None
        self._save_running = True
        saving = ensureDeferred(self._save())
        saving.addCallback(self._saved)
        # Kept for stop() to wait for, unless it has ended already.
        self._saving = saving if self._save_running else None

    def _saved(self, result: None) -> None:
        self._save_running = False
        self._saving = None
        if self._dirty:
            self._schedule_save()

    async def _save(self) -> None:
        """Store the schedule, merged with the stored one; a failure is logged."""
        try:
            await self._sync(write=True)
        except Exception:
            _log.failure(
                "Saving the expiry schedule {path} failed; trying again in {delay} s",
                path=STATE_PATH,
                delay=self.save_delay,
            )

    async def _sync(self, write: bool) -> None:
        """
        Read the stored schedule, adopt what it knows better, and (when
        C{write}) store the merge of both.
        """
        try:
            content: bytes | None = await self._driver.get_content(STATE_PATH)
        except PathNotFoundError:
            content = None
        removed, self._removed = self._removed, {}
        dirty, self._dirty = self._dirty, self._dirty and not write
        ours = dict(self._entries)
        try:
            big = (content is not None and len(content) > _THREAD_BYTES) or (
                len(ours) > _THREAD_ENTRIES
            )
            merged = await _run(big, merge, content, self._known, ours, removed, write)
            if merged.problem is not None:
                _log.warn(
                    "The expiry schedule {path} cannot be read ({problem}); taken as empty",
                    path=STATE_PATH,
                    problem=merged.problem,
                )
            if merged.skipped:
                _log.warn(
                    "{count} entries of the expiry schedule {path} cannot be read and are "
                    "dropped, the first {first!r}",
                    count=len(merged.skipped),
                    path=STATE_PATH,
                    first=merged.skipped[0],
                )
            self._adopt(merged)
            self._known = merged.read
            if merged.content is not None:
                await self._driver.put_content(STATE_PATH, merged.content)
                self._known = merged.written
        except BaseException:
            for key, gone in removed.items():
                self._removed[key] = max(gone, self._removed.get(key, gone))
            self._dirty = self._dirty or dirty
            raise

    def _adopt(self, merged: Merged) -> None:
        """Take the stored entries that are new here or due later than here."""
        if not self._entries and merged.heap is not None:
            self._entries = merged.adopted
            self._heap = merged.heap
        else:
            for key, slot in merged.adopted.items():
                gone = self._removed.get(key)
                if gone is not None and slot.expires <= gone:
                    continue  # expired or discarded meanwhile
                current = self._entries.get(key)
                if current is None or slot.expires > current.expires:
                    self._entries[key] = slot
                    heappush(self._heap, (slot.expires, key))
            self._compact()
        self._arm_timer()


def _run(big: bool, function: Callable[..., T], *args: Any) -> Deferred[T]:
    """Call C{function} in the storage threads when its work is C{big}, else here."""
    if big:
        return in_thread(function, *args)
    return succeed(function(*args))


async def expire_content(registry: Registry, entry: ExpiryEntry) -> None:
    """
    Remove expired content from the cache, as Distribution's proxy does: a
    manifest's revision is deleted from its repository (its bytes stay
    until garbage collection), and the tags pointing at it are removed; a
    blob is unlinked from its repository and its bytes are deleted (those of
    every repository: one that still links it fetches it again).  Content
    already gone is no error.
    """
    # The stored repository, not a cache's view that would fetch what it
    # removes from upstream again.
    repository = Repository(registry, entry.repository)
    digest = entry.digest
    if entry.kind == MANIFEST:
        try:
            await repository.manifests.delete(digest)
        except RegistryError as error:
            if error.error_code is not MANIFEST_UNKNOWN:
                raise
            # Also when the revision is there but its bytes are not, which
            # the manifest store must read to delete it.
            try:
                await registry.driver.delete(paths.manifest_revision(entry.repository, digest))
            except PathNotFoundError:
                pass
            await registry.descriptor_cache.forget(entry.repository, REVISION, digest)
        for tag in await repository.tags.pointing_at(digest):
            try:
                await repository.tags.untag(tag)
            except RegistryError as error:
                if error.error_code is not MANIFEST_UNKNOWN:
                    raise
    elif entry.kind == BLOB:
        try:
            await repository.blobs.unlink(digest)
        except RegistryError as error:
            if error.error_code is not BLOB_UNKNOWN:
                raise
        # Naming the file: where the driver keeps folders, its folder goes too.
        await delete_many(registry.driver, [paths.blob_data(digest)])
    else:
        raise ValueError(f"unknown kind of entry: {entry.kind!r}")
