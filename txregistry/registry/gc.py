# -*- test-case-name: tests.test_gc -*-
"""
Garbage collection: Distribution's mark and sweep
(C{registry/storage/garbagecollect.go}), made safe to run beside registries
that are serving.

Mark: every manifest revision of every repository (with
C{delete_untagged}, only those L{txregistry.registry.reachability} keeps),
its config and layers, and the manifests an index lists.  Sweep: delete the
manifests not kept, then every blob nobody marked, with the repositories'
links to it.

Safe while serving: nothing younger than C{min_age} is deleted (a blob
whose data or any link to it was written since, a manifest revision written
since), and the sweep follows the protocol of
L{txregistry.registry.sweep_notice}: notice, second walk, then delete.  The
second walk also keeps a blob that a repository linked since the first
(an upload of a stored blob, a mount), knowing the blobs' links by their
folders' names; a link written again in place between the walks is not
seen there (clients ask before they upload a blob the repository has).  One
collector at a time holds the storage's lease (L{txregistry.registry.lease}).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger

from txregistry.digest import Digest
from txregistry.drivers.base import delete_many, exists, get_contents
from txregistry.drivers.errors import PathNotFoundError
from txregistry.interfaces import FileInfo, ICache, IStorageDriver
from txregistry.registry import paths
from txregistry.registry.inventory import (
    EVERYTHING,
    LINKS_AND_REFERRERS,
    REVISIONS,
    UNSEEN,
    Link,
    RepositoryInventory,
    read_blobs,
    read_repositories,
)
from txregistry.registry.lease import StorageLease
from txregistry.registry.parallel import DEFAULT_PARALLELISM, map_bounded
from txregistry.registry.reachability import (
    ManifestReferences,
    ManifestUnreadable,
    kept_manifests,
    references_of,
)
from txregistry.registry.sweep_notice import SweepNotice, clear_notice, write_notice

_log = Logger()

# How many blobs one storage request (where the driver batches) deletes;
# the collection's parallelism says how many such requests are in flight.
# On ext4, sixteen batches of a link and a data file per folder deleted
# 20 000 folders in 1.1-1.3 s; two batches of whole folders took 3.5 s.
DELETE_BATCH = 100

# How many manifests one storage request (where the driver batches) reads.
# Read one request each, 2 300 manifests took 0.4 s; a hundred at a time,
# 0.13 s.
READ_BATCH = 100

# Distribution has none; an hour outlasts any push we know of.
DEFAULT_MIN_AGE = 3600.0


class CollectionError(Exception):
    """A collection that could not be done; nothing more was deleted after it."""


class LeaseHeld(CollectionError):
    """Another collector holds the storage's lease: this one did nothing."""


class Reporter(Protocol):
    """Where a collection says what it does."""

    def line(self, text: str) -> None:
        """One line of the collection's account, as Distribution prints them."""

    def progress(self, phase: str, done: int, total: int) -> None:
        """C{done} of C{total} steps of C{phase} are done."""


class SilentReporter:
    """A L{Reporter} that says nothing."""

    def line(self, text: str) -> None:
        """Say nothing."""

    def progress(self, phase: str, done: int, total: int) -> None:
        """Say nothing."""


@dataclass(frozen=True)
class CollectionOptions:
    """
    How to collect.

    @ivar dry_run: only say what would be deleted.
    @ivar delete_untagged: delete manifests no tag reaches (see
        L{txregistry.registry.reachability}).
    @ivar min_age: seconds: nothing written more recently is deleted.
    @ivar parallelism: storage requests in flight at once.
    """

    dry_run: bool = False
    delete_untagged: bool = False
    min_age: float = DEFAULT_MIN_AGE
    parallelism: int = DEFAULT_PARALLELISM


@dataclass
class CollectionTotals:
    """What the scheduled collections of this process did, for the metrics."""

    runs: int = 0
    failures: int = 0
    blobs_deleted: int = 0
    bytes_freed: int = 0


@dataclass
class CollectionResult:
    """What a collection found and did (or, dry, would do)."""

    blobs_marked: int = 0
    blobs_deleted: list[Digest] = field(default_factory=list)
    manifests_deleted: list[tuple[str, Digest]] = field(default_factory=list)
    links_deleted: int = 0
    bytes_freed: int = 0
    kept_young: int = 0
    warnings: list[str] = field(default_factory=list)

    def summary(self, dry_run: bool) -> str:
        """One line: what was marked and deleted, and the space freed."""
        verb = "eligible for deletion" if dry_run else "deleted"
        return (
            f"{self.blobs_marked} blobs marked, {len(self.blobs_deleted)} blobs and "
            f"{len(self.manifests_deleted)} manifests {verb}, "
            f"{self.bytes_freed} bytes {'to free' if dry_run else 'freed'}"
            + (
                f", {self.kept_young} kept as younger than the minimum age"
                if self.kept_young
                else ""
            )
        )


@dataclass
class _Plan:
    """What one walk of the repositories decides."""

    inventories: list[RepositoryInventory]
    kept: dict[str, set[Digest]]
    marked: set[Digest]
    # manifest revisions to delete, per repository
    doomed: dict[str, set[Digest]]


class GarbageCollector:
    """
    Collects the garbage of the storage behind C{driver}.

    @param lease: the storage's collection lease; taken for the sweep (a dry
        run takes none).
    """

    def __init__(
        self,
        driver: IStorageDriver,
        options: CollectionOptions,
        lease: StorageLease | None,
        reporter: Reporter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.driver = driver
        self.options = options
        self.lease = lease
        self.reporter: Reporter = reporter or SilentReporter()
        self._clock = clock
        self._references: dict[Digest, ManifestReferences | None] = {}
        self._renewed = 0.0
        self._notice: SweepNotice | None = None

    async def collect(self) -> CollectionResult:
        """
        Mark, then sweep unless this is a dry run.

        @raise CollectionError: the lease is held by another collector, a
            manifest cannot be read, or the lease was lost while sweeping.
        """
        if self.options.dry_run:
            return await self._collect(None)
        lease = self.lease
        if lease is None:
            raise CollectionError("a collection that deletes needs the storage's lease")
        # Taking the lease waits a moment (see StorageLease); the first
        # walk, which only reads, goes on meanwhile.
        taking = ensureDeferred(lease.acquire())
        held: list[bool] = []

        async def lease_taken() -> bool:
            if not held:
                try:
                    held.append(await taking)
                except Exception:
                    held.append(False)
                    raise
            return held[0]

        try:
            return await self._collect(lease_taken)
        finally:
            if not held:
                try:
                    await lease_taken()
                except Exception:
                    pass
            if held[0]:
                await clear_notice(self.driver)
                await lease.release()

    async def _collect(self, lease_taken: Callable[[], Awaitable[bool]] | None) -> CollectionResult:
        options = self.options
        result = CollectionResult()
        started = self._clock()
        cutoff = started - options.min_age
        # The blob store is read while the repositories are walked: a blob
        # stored after it was read is no candidate, whatever the walk finds.
        reading = ensureDeferred(read_blobs(self.driver, options.parallelism))
        try:
            plan = await self._plan(cutoff, None, result)
        except BaseException:
            reading.cancel()
            reading.addErrback(lambda _: None)
            raise
        blobs = await reading
        young_links = _young_links(plan.inventories, cutoff)
        candidates: dict[Digest, FileInfo] = {}
        for digest, info in sorted(blobs.items(), key=lambda item: str(item[0])):
            if digest in plan.marked:
                continue
            if info.modified > cutoff or digest in young_links:
                result.kept_young += 1
                continue
            candidates[digest] = info
        doomed_count = sum(len(digests) for digests in plan.doomed.values())
        result.blobs_marked = len(plan.marked)
        self.reporter.line(
            f"\n{len(plan.marked)} blobs marked, {len(candidates)} blobs and "
            f"{doomed_count} manifests eligible for deletion"
        )
        if options.dry_run:
            for digest, info in candidates.items():
                self.reporter.line(f"blob eligible for deletion: {digest}")
                result.blobs_deleted.append(digest)
                result.bytes_freed += info.size
            result.manifests_deleted = _pairs(plan.doomed)
            return result

        assert self.lease is not None and lease_taken is not None
        if not await lease_taken():
            holder = await self.lease.read()
            raise LeaseHeld(
                "another collector holds the lease"
                + (f" ({holder.owner})" if holder is not None else "")
            )
        self._renewed = self._clock()
        self._notice = SweepNotice(
            self.lease.owner, self._clock() + self.lease.duration, frozenset(candidates)
        )
        await write_notice(self.driver, self._notice)
        # The second walk: a manifest written since the first, or a blob
        # linked into a repository since, stays.
        final = await self._plan(cutoff, plan, result)
        young_links |= _changed_links(plan.inventories, final.inventories)
        for digest in list(candidates):
            if digest in final.marked or digest in young_links:
                del candidates[digest]
                result.kept_young += 1
        await self._delete_manifests(final, result)
        await self._delete_blobs(candidates, final.inventories, result)
        await self._delete_dangling(final.inventories, set(blobs), cutoff, result)
        return result

    # -- marking ---------------------------------------------------------------------

    async def _plan(self, cutoff: float, previous: _Plan | None, result: CollectionResult) -> _Plan:
        """
        Walk every repository and decide what stays.  On the second walk
        (C{previous} given), whatever was kept stays kept, and so does every
        revision written since the first.
        """
        # Tags matter only to --delete-untagged (which roots, and the tag
        # histories of a manifest it deletes), and only on the first walk:
        # a push that tags a manifest writes its revision again, which the
        # second walk sees.  The second reads the manifests' links, and the
        # blobs' links by their folders' names (a blob newly linked into a
        # repository is one to keep, whenever its link was written); what
        # the tag histories and the referrers index hold comes from the first.
        untagged = self.options.delete_untagged
        if previous is not None:
            folders: Sequence[str] = REVISIONS
        else:
            folders = EVERYTHING if untagged else LINKS_AND_REFERRERS
        inventories = await read_repositories(
            self.driver,
            self.options.parallelism,
            folders,
            tags=untagged and previous is None,
            layer_names=previous is not None,
        )
        if previous is not None:
            _carry_over(previous.inventories, inventories)
            await self._time_new_links(inventories)
        wanted = {digest for inventory in inventories for digest in inventory.revisions}
        await self._read_references(wanted - set(self._references), result)
        plan = _Plan(inventories, {}, set(), {})
        earlier = _revision_times(previous)
        for inventory in inventories:
            before = None if earlier is None else earlier.get(inventory.name, {})
            roots: set[Digest] = set()
            for digest, link in inventory.revisions.items():
                written_since = before is not None and (
                    digest not in before or before[digest] != link.modified
                )
                if not self.options.delete_untagged or link.modified > cutoff or written_since:
                    roots.add(digest)
            if self.options.delete_untagged:
                roots |= inventory.tagged()
            if previous is not None:
                roots |= previous.kept.get(inventory.name, set())
            kept = kept_manifests(inventory.revisions, roots, self._references)
            plan.kept[inventory.name] = kept
            doomed = set(inventory.revisions) - kept
            if doomed:
                plan.doomed[inventory.name] = doomed
            if previous is None:
                self._report_marks(inventory, kept)
            for digest in kept:
                plan.marked.add(digest)
                found = self._references.get(digest)
                if found is not None:
                    plan.marked.update(found.blobs)
        return plan

    async def _time_new_links(self, inventories: list[RepositoryInventory]) -> None:
        """
        Read the time of each blob link the second walk found by name and
        the first did not see: one written since, or a folder that holds
        no link (left by Distribution's blob delete, which takes the link
        and not its folder), which is dropped.
        """
        new = [
            (inventory, link)
            for inventory in inventories
            for link in inventory.layers.values()
            if link.modified == UNSEEN
        ]

        async def time(found: tuple[RepositoryInventory, Link]) -> None:
            inventory, link = found
            try:
                info = await self.driver.stat(link.path)
            except PathNotFoundError:
                del inventory.layers[link.digest]
                return
            inventory.layers[link.digest] = replace(link, modified=info.modified)

        await map_bounded(time, new, self.options.parallelism)

    def _report_marks(self, inventory: RepositoryInventory, kept: set[Digest]) -> None:
        say = self.reporter.line
        say(inventory.name)
        for digest in sorted(inventory.revisions, key=str):
            if digest not in kept:
                say(f"manifest eligible for deletion: {digest}")
                continue
            say(f"{inventory.name}: marking manifest {digest} ")
            found = self._references.get(digest)
            for blob in found.blobs if found is not None else ():
                say(f"{inventory.name}: marking blob {blob}")

    async def _read_references(self, digests: set[Digest], result: CollectionResult) -> None:
        """
        Read what each manifest of C{digests} references, a batch at a
        time (see L{IBatchReader}), several batches at once.
        """
        ordered = sorted(digests, key=str)
        batches = [ordered[i : i + READ_BATCH] for i in range(0, len(ordered), READ_BATCH)]
        done = 0

        async def read(batch: list[Digest]) -> None:
            nonlocal done
            found = await get_contents(self.driver, [paths.blob_data(digest) for digest in batch])
            for digest in batch:
                content = found.get(paths.blob_data(digest))
                if content is None:
                    # Its bytes are gone: there is nothing of it to keep.
                    self._references[digest] = None
                    result.warnings.append(f"manifest {digest} has no content; skipped")
                    continue
                try:
                    self._references[digest] = references_of(content)
                except ManifestUnreadable as error:
                    raise CollectionError(
                        f"manifest {digest} cannot be read ({error}): what it references is "
                        "unknown, so nothing is deleted; see txregistry check"
                    ) from None
            done += len(batch)
            self.reporter.progress("reading manifests", done, len(ordered))

        await map_bounded(read, batches, self.options.parallelism)

    # -- sweeping --------------------------------------------------------------------

    async def _keep_lease(self) -> None:
        """
        Renew the lease, and the notice's expiry with it, every minute; stop
        the sweep if another holder took the lease.
        """
        if self.lease is None or self._clock() - self._renewed < 60:
            return
        self._renewed = self._clock()
        if not await self.lease.renew():
            raise CollectionError("the collection lease was lost; the sweep stopped")
        if self._notice is not None:
            self._notice = replace(self._notice, expires=self._clock() + self.lease.duration)
            await write_notice(self.driver, self._notice)

    async def _delete_manifests(self, plan: _Plan, result: CollectionResult) -> None:
        by_name = {inventory.name: inventory for inventory in plan.inventories}

        async def delete(doomed: tuple[str, Digest]) -> None:
            name, digest = doomed
            inventory = by_name[name]
            await self._keep_lease()
            try:
                info = await self.driver.stat(paths.manifest_revision_link(name, digest))
            except PathNotFoundError:
                return  # deleted meanwhile
            if info.modified != inventory.revisions[digest].modified:
                result.kept_young += 1
                return  # pushed again since the walk
            for link in inventory.tag_history.get(digest, []):
                await self._delete(link.path.rsplit("/", 1)[0], result)
            for _subject, link in inventory.referrers:
                if link.digest == digest:
                    await self._delete(link.path.rsplit("/", 1)[0], result)
            self.reporter.line(f"deleting manifest: {paths.manifest_revision(name, digest)}")
            await self._delete(paths.manifest_revision(name, digest), result, counted=False)
            result.manifests_deleted.append((name, digest))

        await map_bounded(delete, _pairs(plan.doomed), self.options.parallelism)
        result.manifests_deleted.sort(key=lambda pair: (pair[0], str(pair[1])))

    async def _delete_blobs(
        self,
        candidates: dict[Digest, FileInfo],
        inventories: list[RepositoryInventory],
        result: CollectionResult,
    ) -> None:
        """
        Delete the blobs, with every repository's link to them, a batch at a
        time.  Each goes by its one file (the link, the data), which takes
        its folder with it (see L{IBatchDeleter.delete_many}).
        """
        links: dict[Digest, list[str]] = {}
        for inventory in inventories:
            for digest, link in inventory.layers.items():
                links.setdefault(digest, []).append(link.path)
        digests = list(candidates)
        batches = [digests[i : i + DELETE_BATCH] for i in range(0, len(digests), DELETE_BATCH)]
        done = 0

        async def delete(batch: list[Digest]) -> None:
            nonlocal done
            await self._keep_lease()
            link_files: list[str] = []
            data_files: dict[str, Digest] = {}
            for digest in batch:
                self.reporter.line(f"blob eligible for deletion: {digest}")
                link_files.extend(links.get(digest, []))
                data = paths.blob_data(digest)
                data_files[data] = digest
                self.reporter.line(f"Deleting blob: {data.rsplit('/', 1)[0]}")
            # Links first: a blob is never left linked with its data gone.
            deleted = await delete_many(self.driver, [*link_files, *data_files])
            for path in deleted:
                blob = data_files.get(path)
                if blob is None:
                    result.links_deleted += 1
                else:
                    result.blobs_deleted.append(blob)
                    result.bytes_freed += candidates[blob].size
            done += len(batch)
            self.reporter.progress("deleting blobs", done, len(digests))

        await map_bounded(delete, batches, self.options.parallelism)
        result.blobs_deleted.sort(key=str)

    async def _delete_dangling(
        self,
        inventories: list[RepositoryInventory],
        stored: set[Digest],
        cutoff: float,
        result: CollectionResult,
    ) -> None:
        """
        Remove the links that lead nowhere: layer links to blobs that were
        not stored (deleted by Distribution's collector, say), and referrers
        entries whose manifest is gone.  Each is confirmed first, as a push
        may have written it since the walk.
        """
        dangling: list[tuple[str, str]] = []  # (link folder, what must be missing)
        for inventory in inventories:
            for digest, link in inventory.layers.items():
                if digest not in stored and link.modified <= cutoff:
                    dangling.append((link.path.rsplit("/", 1)[0], paths.blob_data(digest)))
            for _subject, link in inventory.referrers:
                if link.digest not in inventory.revisions and link.modified <= cutoff:
                    revision = paths.manifest_revision_link(inventory.name, link.digest)
                    dangling.append((link.path.rsplit("/", 1)[0], revision))

        async def remove(entry: tuple[str, str]) -> None:
            folder, target = entry
            if not await exists(self.driver, target):
                await self._delete(folder, result)

        await map_bounded(remove, sorted(dangling), self.options.parallelism)

    async def _delete(self, path: str, result: CollectionResult, counted: bool = True) -> None:
        try:
            await self.driver.delete(path)
        except PathNotFoundError:
            return
        if counted:
            result.links_deleted += 1


def _pairs(doomed: dict[str, set[Digest]]) -> list[tuple[str, Digest]]:
    return [(name, digest) for name in doomed for digest in sorted(doomed[name], key=str)]


def _carry_over(
    first: Iterable[RepositoryInventory], second: Iterable[RepositoryInventory]
) -> None:
    """
    Give the inventories of the second walk the tag histories and referrers
    of the first, and the time of each blob link the first saw (the second
    knows them by name, L{UNSEEN}: one it alone found stays so, new).
    """
    earlier = {inventory.name: inventory for inventory in first}
    for inventory in second:
        before = earlier.get(inventory.name)
        if before is not None:
            inventory.tags = before.tags
            inventory.current = before.current
            inventory.tag_history = before.tag_history
            inventory.referrers = before.referrers
            for digest, link in inventory.layers.items():
                seen = before.layers.get(digest)
                if seen is not None and link.modified == UNSEEN:
                    inventory.layers[digest] = seen


def _revision_times(plan: _Plan | None) -> dict[str, dict[Digest, float]] | None:
    """When each revision of each repository was written, as a walk found it."""
    if plan is None:
        return None
    return {
        inventory.name: {digest: link.modified for digest, link in inventory.revisions.items()}
        for inventory in plan.inventories
    }


def _young_links(inventories: Iterable[RepositoryInventory], cutoff: float) -> set[Digest]:
    """The blobs some repository linked more recently than C{cutoff}."""
    return {
        digest
        for inventory in inventories
        for digest, link in inventory.layers.items()
        if link.modified > cutoff
    }


def _changed_links(
    first: Iterable[RepositoryInventory], second: Iterable[RepositoryInventory]
) -> set[Digest]:
    """The blobs linked, or linked again, between two walks."""
    before = {
        (inventory.name, digest): link.modified
        for inventory in first
        for digest, link in inventory.layers.items()
    }
    return {
        digest
        for inventory in second
        for digest, link in inventory.layers.items()
        if before.get((inventory.name, digest)) != link.modified
    }


def scheduled_collection(
    driver: IStorageDriver,
    options: CollectionOptions,
    reactor: Any,
    cache: ICache | None = None,
    totals: CollectionTotals | None = None,
) -> Callable[[], Awaitable[str]]:
    """
    The job of C{storage.gc}: one collection, taking turns with the other
    processes sharing the storage; says what it did.  When it deleted
    anything, C{cache} is emptied (L{forget_collected}).  C{totals} adds up
    the collections this process made (not the ones it skipped).

    @raise CollectionError: when a collection fails (not when another
        process collects now).
    """

    async def collect() -> str:
        lease = StorageLease(driver, paths.gc_lease(), reactor)
        try:
            result = await GarbageCollector(driver, options, lease).collect()
        except LeaseHeld as error:
            return f"skipped: {error}"
        except Exception:
            if totals is not None:
                totals.runs += 1
                totals.failures += 1
            raise
        if totals is not None:
            totals.runs += 1
            if not options.dry_run:
                totals.blobs_deleted += len(result.blobs_deleted)
                totals.bytes_freed += result.bytes_freed
        warnings = [*result.warnings, *await forget_collected(result, options, cache)]
        for warning in warnings:
            _log.warn("garbage collection: {warning}", warning=warning)
        return result.summary(options.dry_run)

    return collect


async def forget_collected(
    result: CollectionResult, options: CollectionOptions, cache: ICache | None
) -> list[str]:
    """
    Empty C{cache} after a collection that deleted anything: it may know
    blobs and manifests that are gone (Distribution leaves that to the
    operator, who must flush Redis after its C{garbage-collect}).

    @return: a warning when the cache could not be emptied.
    """
    deleted = result.blobs_deleted or result.manifests_deleted or result.links_deleted
    if cache is None or options.dry_run or not deleted:
        return []
    if await cache.clear():
        return []
    return [
        "the descriptor cache could not be emptied: it may answer for deleted blobs and "
        "manifests until it is (see the log about it)"
    ]
