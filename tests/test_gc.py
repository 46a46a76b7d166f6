"""
Garbage collection's mark and sweep, on the in-memory driver (the driver
suite covers the others; tests/test_gc_clients.py pushes real images to
every driver): what is kept, what is deleted, what is safe.
"""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock, deferLater
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gc_support import Content
from txregistry.cache import LAYER
from txregistry.cache.inmemory import InMemoryCache
from txregistry.digest import Digest
from txregistry.drivers.inmemory import InMemoryDriver
from txregistry.errors import RegistryError
from txregistry.interfaces import IStorageDriver
from txregistry.registry import gc as gc_module
from txregistry.registry import paths
from txregistry.registry.gc import (
    CollectionError,
    CollectionOptions,
    CollectionResult,
    GarbageCollector,
    scheduled_collection,
)
from txregistry.registry.lease import StorageLease
from txregistry.registry.parallel import map_bounded
from txregistry.registry.reachability import (
    ManifestReferences,
    ManifestUnreadable,
    kept_manifests,
    references_of,
)
from txregistry.registry.sweep_notice import SweepNotice, read_notice, write_notice

SIGNATURE = "application/vnd.example.signature"


class Lines:
    """A reporter that keeps what it is told."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.progress_calls: list[tuple[str, int, int]] = []

    def line(self, text: str) -> None:
        self.lines.append(text)

    def progress(self, phase: str, done: int, total: int) -> None:
        self.progress_calls.append((phase, done, total))


def lease(driver: IStorageDriver, owner: str | None = None) -> StorageLease:
    return StorageLease(driver, paths.gc_lease(), reactor, owner=owner, settle=0)


async def collect(
    driver: IStorageDriver,
    reporter: Lines | None = None,
    **options: Any,
) -> CollectionResult:
    options.setdefault("min_age", 0.0)
    collector = GarbageCollector(driver, CollectionOptions(**options), lease(driver), reporter)
    return await collector.collect()


class MarkAndSweepTests(TestCase):
    """Without --delete-untagged: every manifest stays, unreferenced blobs go."""

    def setUp(self) -> None:
        self.driver = InMemoryDriver()
        self.content = Content(self.driver)

    async def test_unreferenced_blob_deleted(self) -> None:
        """
        A blob no manifest references is deleted with the links to it; the
        blobs of every manifest, tagged or not, stay.
        """
        c = self.content
        tagged = await c.image("app", "tagged", tag="latest")
        untagged = await c.image("app", "untagged")
        orphan = await c.blob("app", b"nobody references me")
        await c.blob("other", b"nobody references me")
        reporter = Lines()
        result = await collect(self.driver, reporter)
        self.assertFalse(await c.stored(orphan))
        self.assertFalse(await c.linked("app", orphan))
        self.assertFalse(await c.linked("other", orphan))
        for manifest in (tagged, untagged):
            self.assertTrue(await c.has_manifest("app", manifest))
            self.assertTrue(await c.stored(manifest))
        self.assertEqual(result.blobs_deleted, [orphan])
        self.assertEqual(result.bytes_freed, len(b"nobody references me"))
        self.assertEqual(result.manifests_deleted, [])
        self.assertEqual(result.blobs_marked, 6)
        self.assertEqual(result.links_deleted, 2)
        self.assertIn(f"app: marking manifest {tagged} ", reporter.lines)
        self.assertIn(f"blob eligible for deletion: {orphan}", reporter.lines)
        self.assertIn(
            "\n6 blobs marked, 1 blobs and 0 manifests eligible for deletion", reporter.lines
        )
        self.assertIsNone(await read_notice(self.driver))
        self.assertIsNone(await lease(self.driver).read())

    async def test_dry_run(self) -> None:
        """A dry run reports the same and deletes nothing."""
        c = self.content
        await c.image("app", "tagged", tag="latest")
        orphan = await c.blob("app", b"orphan")
        before = await c.files()
        result = await collect(self.driver, dry_run=True)
        self.assertEqual(result.blobs_deleted, [orphan])
        self.assertEqual(await c.files(), before)

    async def test_shared_layer(self) -> None:
        """A layer that one kept manifest references stays, whoever else linked it."""
        c = self.content
        shared = b"shared layer"
        await c.image("a", "one", tag="v1", layers=[shared])
        await c.image("b", "two", layers=[shared])
        result = await collect(self.driver, delete_untagged=True)
        self.assertTrue(await c.stored(Digest.of(shared)))
        self.assertTrue(await c.linked("a", Digest.of(shared)))
        self.assertEqual(len(result.manifests_deleted), 1)

    async def test_empty_storage(self) -> None:
        """Nothing stored: nothing to do, and no failure."""
        result = await collect(self.driver)
        self.assertEqual(
            result.summary(False), "0 blobs marked, 0 blobs and 0 manifests deleted, 0 bytes freed"
        )

    async def test_young_content_kept(self) -> None:
        """Nothing written within the minimum age is deleted, manifests included."""
        c = self.content
        orphan = await c.blob("app", b"orphan")
        untagged = await c.image("app", "untagged")
        result = await collect(self.driver, min_age=3600.0, delete_untagged=True)
        self.assertTrue(await c.stored(orphan))
        self.assertTrue(await c.has_manifest("app", untagged))
        self.assertEqual(result.blobs_deleted, [])
        self.assertEqual(result.manifests_deleted, [])
        self.assertEqual(result.kept_young, 1)

    async def test_missing_manifest_content(self) -> None:
        """A revision whose bytes are gone is skipped with a warning; the rest goes on."""
        c = self.content
        broken = await c.image("app", "broken", tag="latest")
        orphan = await c.blob("app", b"orphan")
        await self.driver.delete(paths.blob_data(broken).rsplit("/", 1)[0])
        result = await collect(self.driver)
        self.assertEqual(result.warnings, [f"manifest {broken} has no content; skipped"])
        self.assertFalse(await c.stored(orphan))

    async def test_unreadable_manifest(self) -> None:
        """A manifest that is not JSON stops the collection before anything is deleted."""
        c = self.content
        broken = await c.image("app", "broken", tag="latest")
        await c.blob("app", b"orphan")
        await self.driver.put_content(paths.blob_data(broken), b"\x00 not json")
        before = await c.files()
        error = await self.assertFailure(
            Deferred.fromCoroutine(collect(self.driver)), CollectionError
        )
        self.assertIn(str(broken), str(error))
        self.assertEqual(await c.files() - {paths.gc_lease()}, before)
        self.assertIsNone(await lease(self.driver).read())

    async def test_dangling_links_removed(self) -> None:
        """
        Layer links to blobs that are not stored, and referrers entries whose
        manifest is gone (deleted by Distribution, say), are removed.
        """
        c = self.content
        subject = await c.image("app", "subject", tag="latest")
        signature = await c.image("app", "sig", subject=subject, artifact_type=SIGNATURE)
        gone = await c.blob("app", b"gone")
        await self.driver.delete(paths.blob_data(gone).rsplit("/", 1)[0])
        await self.driver.delete(paths.manifest_revision("app", signature))
        await collect(self.driver)
        self.assertFalse(await c.linked("app", gone))
        self.assertEqual(await c.files() & {paths.referrer_link("app", subject, signature)}, set())


class DeleteUntaggedTests(TestCase):
    """
    With --delete-untagged: what no tag reaches goes, but never the images
    of a kept index, nor the referrers of a kept manifest.
    """

    def setUp(self) -> None:
        self.driver = InMemoryDriver()
        self.content = Content(self.driver)

    async def test_untagged_deleted(self) -> None:
        """An untagged image goes: its revision, its tag history, its own blobs."""
        c = self.content
        kept = await c.image("app", "kept", tag="latest", layers=[b"shared"])
        old = await c.image("app", "old", tag="old", layers=[b"shared", b"old only"])
        await c.registry.repository("app").tags.untag("old")
        # A tag that pointed at it once and points elsewhere now.
        await c.registry.repository("app").tags.tag("moved", old)
        await c.registry.repository("app").tags.tag("moved", kept)
        reporter = Lines()
        result = await collect(self.driver, reporter, delete_untagged=True)
        self.assertEqual(result.manifests_deleted, [("app", old)])
        self.assertFalse(await c.has_manifest("app", old))
        self.assertFalse(await c.stored(old))
        self.assertFalse(await c.stored(Digest.of(b"old only")))
        self.assertFalse(await c.linked("app", Digest.of(b"old only")))
        self.assertTrue(await c.stored(Digest.of(b"shared")))
        self.assertNotIn(paths.tag_index_link("app", "moved", old), await c.files())
        self.assertIn(paths.tag_index_link("app", "moved", kept), await c.files())
        self.assertIn(f"manifest eligible for deletion: {old}", reporter.lines)
        self.assertIn(f"deleting manifest: {paths.manifest_revision('app', old)}", reporter.lines)

    async def test_index_children_kept(self) -> None:
        """The platform images of a tagged index stay (Distribution 2.8 deletes them)."""
        c = self.content
        amd64 = await c.image("multi", "amd64")
        arm64 = await c.image("multi", "arm64")
        index = await c.index("multi", [amd64, arm64], tag="latest")
        untagged_index = await c.index("multi", [await c.image("multi", "lonely")])
        result = await collect(self.driver, delete_untagged=True)
        for digest in (index, amd64, arm64):
            self.assertTrue(await c.has_manifest("multi", digest))
            self.assertTrue(await c.stored(digest))
        self.assertTrue(await c.stored(Digest.of(b"layer of arm64")))
        deleted = {digest for _, digest in result.manifests_deleted}
        self.assertIn(untagged_index, deleted)
        self.assertEqual(len(deleted), 2)
        self.assertFalse(await c.stored(Digest.of(b"layer of lonely")))

    async def test_referrers_kept_transitively(self) -> None:
        """
        A signature of a kept image stays, and a signature of that
        signature; referrers of a deleted image go with it, and leave the
        referrers index.
        """
        c = self.content
        image = await c.image("app", "image", tag="latest")
        signature = await c.image("app", "sig", subject=image, artifact_type=SIGNATURE)
        countersign = await c.image("app", "sig2", subject=signature, artifact_type=SIGNATURE)
        old = await c.image("app", "old")
        old_signature = await c.image("app", "old sig", subject=old, artifact_type=SIGNATURE)
        result = await collect(self.driver, delete_untagged=True)
        for digest in (image, signature, countersign):
            self.assertTrue(await c.has_manifest("app", digest))
        self.assertEqual(
            {digest for _, digest in result.manifests_deleted},
            {old, old_signature},
        )
        referrers = await c.registry.repository("app").manifests.referrers(image)
        self.assertEqual([m.digest for m in referrers], [signature])
        self.assertNotIn(paths.referrer_link("app", old, old_signature), await c.files())
        self.assertIn(paths.referrer_link("app", image, signature), await c.files())

    async def test_tagged_referrer_of_deleted_subject(self) -> None:
        """A referrer that is tagged itself stays with its tag, its subject gone."""
        c = self.content
        old = await c.image("app", "old")
        signature = await c.image("app", "sig", tag="sig", subject=old, artifact_type=SIGNATURE)
        await collect(self.driver, delete_untagged=True)
        self.assertFalse(await c.has_manifest("app", old))
        self.assertTrue(await c.has_manifest("app", signature))


class LeaseTests(TestCase):
    """One collector at a time."""

    def setUp(self) -> None:
        self.driver = InMemoryDriver()
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def make(self, owner: str) -> StorageLease:
        return StorageLease(
            self.driver,
            paths.gc_lease(),
            reactor,
            owner=owner,
            settle=0,
            duration=60,
            clock=self.clock,
        )

    async def test_one_holder(self) -> None:
        first, second = self.make("first"), self.make("second")
        self.assertTrue(await first.acquire())
        self.assertFalse(await second.acquire())
        self.assertTrue(await first.renew())
        self.assertFalse(await second.renew())
        await second.release()  # not its lease: nothing happens
        self.assertEqual((await first.read()).owner, "first")  # type: ignore[union-attr]
        await first.release()
        self.assertIsNone(await first.read())
        self.assertTrue(await second.acquire())

    async def test_expired_lease_taken(self) -> None:
        first, second = self.make("first"), self.make("second")
        self.assertTrue(await first.acquire())
        self.now += 61
        self.assertTrue(await second.acquire())
        self.assertFalse(await first.renew())

    async def test_last_writer_wins(self) -> None:
        """Two takers that both saw the lease free: the one who wrote last holds it."""
        first, second = self.make("first"), self.make("second")
        original = self.driver.get_content
        reads = [0]

        def get_content(path: str) -> Deferred[bytes]:
            reads[0] += 1
            if reads[0] == 2:
                # Between the first taker's write and its read back, the second writes.
                self.driver.put_content(
                    path, json.dumps({"owner": "second", "expires": 2000}).encode()
                )
            return original(path)

        self.patch(self.driver, "get_content", get_content)
        self.assertFalse(await first.acquire())
        self.assertEqual((await second.read()).owner, "second")  # type: ignore[union-attr]

    def test_settle_measured(self) -> None:
        """
        Without a settle given, a taking waits ten of the storage's round
        trips as it measured them, and at least half a second.
        """
        clock = Clock()
        delays = {"write": 0.0}
        original = self.driver.put_content

        def put_content(path: str, content: bytes) -> Deferred[None]:
            return deferLater(clock, delays["write"], lambda: None).addCallback(
                lambda _: original(path, content)
            )

        self.patch(self.driver, "put_content", put_content)
        for write_takes, waits in ((0.0, 0.5), (0.25, 2.5)):
            delays["write"] = write_takes
            lease = StorageLease(self.driver, f"/lease-{write_takes}", clock, owner="me")
            lease._monotonic = clock.seconds  # type: ignore[method-assign]
            taking = Deferred.fromCoroutine(lease.acquire())
            clock.advance(write_takes)
            clock.advance(waits - 0.01)
            self.assertNoResult(taking)
            clock.advance(0.02)
            self.assertTrue(self.successResultOf(taking))

    async def test_unreadable_lease(self) -> None:
        await self.driver.put_content(paths.gc_lease(), b"{not json")
        self.assertIsNone(await self.make("x").read())
        self.assertTrue(await self.make("x").acquire())

    async def test_collector_refused_while_held(self) -> None:
        """A collection fails, deleting nothing, while another collector holds the lease."""
        content = Content(self.driver)
        orphan = await content.blob("app", b"orphan")
        other = StorageLease(self.driver, paths.gc_lease(), reactor, owner="other", settle=0)
        self.assertTrue(await other.acquire())
        error = await self.assertFailure(
            Deferred.fromCoroutine(collect(self.driver)), CollectionError
        )
        self.assertIn("other", str(error))
        self.assertTrue(await content.stored(orphan))
        # A dry run needs no lease.
        result = await collect(self.driver, dry_run=True)
        self.assertEqual(result.blobs_deleted, [orphan])


class SweepSafetyTests(TestCase):
    """A push that overlaps a sweep ends with a whole image, or fails."""

    def setUp(self) -> None:
        self.driver = InMemoryDriver()
        self.content = Content(self.driver)

    async def test_push_refused_while_its_blob_is_swept(self) -> None:
        """
        A manifest push that finds the sweep notice naming one of its blobs
        fails with MANIFEST_BLOB_UNKNOWN, and its revision is taken back.
        """
        c = self.content
        layer = await c.blob("app", b"old layer")
        await write_notice(self.driver, SweepNotice("gc", time.time() + 60, frozenset([layer])))
        error = await self.assertFailure(
            Deferred.fromCoroutine(c.image("app", "late", tag="latest", reuse=[layer])),
            RegistryError,
        )
        self.assertEqual(error.error_code.code, "MANIFEST_BLOB_UNKNOWN")
        self.assertFalse([path for path in await c.files() if "/_manifests/revisions/" in path])

    async def test_expired_or_unrelated_notice_ignored(self) -> None:
        c = self.content
        await write_notice(
            self.driver, SweepNotice("gc", time.time() - 1, frozenset([Digest.of(b"x")]))
        )
        await c.image("app", "one", tag="latest", layers=[b"x"])
        await write_notice(
            self.driver, SweepNotice("gc", time.time() + 60, frozenset([Digest.of(b"y")]))
        )
        await c.image("app", "two", tag="latest", layers=[b"x"])

    async def test_unreadable_notice_refuses(self) -> None:
        """A notice that does not parse names everything: pushes fail rather than guess."""
        await self.driver.put_content(paths.gc_sweep_notice(), b"garbage")
        notice = await read_notice(self.driver)
        assert notice is not None
        self.assertEqual(notice.threatens([Digest.of(b"anything")]), [Digest.of(b"anything")])

    async def test_push_during_sweep_rescued(self) -> None:
        """
        A manifest pushed after the first walk, before the notice (so its
        check passed), keeps its blobs: the second walk sees it.
        """
        c = self.content
        layer = await c.blob("app", b"old layer")
        pushed: list[Digest] = []
        original = self.driver.put_content

        def put_content(path: str, content: bytes) -> Deferred[None]:
            if path == paths.gc_sweep_notice() and not pushed:
                # The push's check ran just before the notice was written.
                return Deferred.fromCoroutine(self._push_then(original, path, content, pushed))
            return original(path, content)

        self.patch(self.driver, "put_content", put_content)
        result = await collect(self.driver)
        self.assertTrue(pushed)
        self.assertTrue(await c.stored(layer))
        self.assertTrue(await c.stored(pushed[0]))
        self.assertNotIn(layer, result.blobs_deleted)

    async def _push_then(self, put: Any, path: str, content: bytes, pushed: list[Digest]) -> None:
        layer = Digest.of(b"old layer")
        pushed.append(await self.content.image("app", "during", tag="latest", reuse=[layer]))
        await put(path, content)

    async def test_blob_linked_again_during_sweep(self) -> None:
        """
        A blob uploaded again while the collector sweeps (an upload of a
        stored blob only links it) is not deleted: the second walk sees the
        new link.
        """
        c = self.content
        layer = await c.blob("app", b"again")
        original = self.driver.put_content

        def put_content(path: str, content: bytes) -> Deferred[None]:
            written = original(path, content)
            if path == paths.gc_sweep_notice():
                original(paths.layer_link("other", layer), paths.link_content(layer))
            return written

        self.patch(self.driver, "put_content", put_content)
        result = await collect(self.driver)
        self.assertTrue(await c.stored(layer))
        self.assertTrue(await c.linked("other", layer))
        self.assertEqual(result.blobs_deleted, [])
        self.assertEqual(result.kept_young, 1)

    async def test_link_folder_without_link(self) -> None:
        """
        A repository's link folder holding no link (Distribution's blob
        delete leaves the folder) does not keep the blob as newly linked.
        """
        c = self.content
        layer = await c.blob("app", b"garbage")
        stray = paths.layer_link("other", layer).rsplit("/", 1)[0] + "/stray"
        await self.driver.put_content(stray, b"not a link")
        result = await collect(self.driver)
        self.assertEqual(result.blobs_deleted, [layer])
        self.assertEqual(result.kept_young, 0)
        self.assertFalse(await c.stored(layer))
        self.assertEqual(await self.driver.get_content(stray), b"not a link")


class LongSweepTests(TestCase):
    """A sweep longer than a minute renews the lease, and the notice's expiry with it."""

    async def test_renewed(self) -> None:
        driver = InMemoryDriver()
        content = Content(driver)
        for number in range(250):
            await content.blob("app", f"orphan {number}".encode())
        now = [time.time()]

        def clock() -> float:
            now[0] += 20.0  # every look at the clock is twenty seconds later
            return now[0]

        notices: list[float] = []
        original = driver.put_content

        def put_content(path: str, data: bytes) -> Deferred[None]:
            if path == paths.gc_sweep_notice():
                notices.append(json.loads(data)["expires"])
            return original(path, data)

        self.patch(driver, "put_content", put_content)
        lease = StorageLease(driver, paths.gc_lease(), reactor, settle=0, clock=clock)
        collector = GarbageCollector(driver, CollectionOptions(min_age=0.0), lease, clock=clock)
        result = await collector.collect()
        self.assertEqual(len(result.blobs_deleted), 250)
        self.assertGreater(len(notices), 1)
        self.assertEqual(notices, sorted(notices))
        self.assertIsNone(await read_notice(driver))


class ReachabilityTests(SynchronousTestCase):
    """What a manifest references, and what a repository keeps."""

    def test_references_of_image(self) -> None:
        config, layer, subject = Digest.of(b"c"), Digest.of(b"l"), Digest.of(b"s")
        content = json.dumps(
            {
                "config": {"digest": str(config)},
                "layers": [{"digest": str(layer)}, {"digest": "not a digest"}, "junk"],
                "subject": {"digest": str(subject)},
            }
        ).encode()
        found = references_of(content)
        self.assertEqual(found.blobs, (config, layer))
        self.assertEqual(found.subject, subject)
        self.assertEqual(found.children, ())

    def test_references_of_schema1(self) -> None:
        """Distribution's stored schema 1 manifests name their layers in fsLayers."""
        layer = Digest.of(b"l")
        content = json.dumps(
            {"schemaVersion": 1, "fsLayers": [{"blobSum": str(layer)}] * 2}
        ).encode()
        self.assertEqual(references_of(content).blobs, (layer,))

    def test_references_of_index(self) -> None:
        child = Digest.of(b"child")
        content = json.dumps({"manifests": [{"digest": str(child)}]}).encode()
        self.assertEqual(references_of(content), ManifestReferences((child,), (child,), None))

    def test_unreadable(self) -> None:
        for content in (b"\xff", b"[1]", b"nope"):
            self.assertRaises(ManifestUnreadable, references_of, content)

    def test_kept_closure(self) -> None:
        index, child, sig, sig2, other, other_sig = (
            Digest.of(n) for n in (b"i", b"c", b"s", b"t", b"o", b"p")
        )
        references = {
            index: ManifestReferences((child,), (child,)),
            child: ManifestReferences(),
            sig: ManifestReferences(subject=child),
            sig2: ManifestReferences(subject=sig),
            other: ManifestReferences(),
            other_sig: ManifestReferences(subject=other),
        }
        revisions = list(references)
        self.assertEqual(kept_manifests(revisions, [index], references), {index, child, sig, sig2})
        self.assertEqual(kept_manifests(revisions, [], references), set())
        # A root that is not a revision of the repository keeps nothing.
        self.assertEqual(kept_manifests(revisions[1:], [index], references), set())


class MapBoundedTests(TestCase):
    """Storage work a bounded number at a time."""

    async def test_order_and_limit(self) -> None:
        running = [0]
        most = [0]
        pending: list[Deferred[None]] = []

        async def work(item: int) -> int:
            running[0] += 1
            most[0] = max(most[0], running[0])
            waiting: Deferred[None] = Deferred()
            pending.append(waiting)
            reactor.callLater(0, waiting.callback, None)
            await waiting
            running[0] -= 1
            return item * 2

        self.assertEqual(await map_bounded(work, range(10), limit=3), [i * 2 for i in range(10)])
        self.assertEqual(most[0], 3)
        self.assertEqual(await map_bounded(work, [], limit=3), [])

    async def test_first_error_after_all_end(self) -> None:
        ended: list[int] = []

        async def work(item: int) -> int:
            await succeed(None)
            ended.append(item)
            if item in (2, 4):
                raise ValueError(item)
            return item

        error = await self.assertFailure(
            Deferred.fromCoroutine(map_bounded(work, range(6), limit=2)), ValueError
        )
        self.assertEqual(error.args, (2,))
        self.assertEqual(sorted(ended), list(range(6)))


class ForgettingTests(TestCase):
    """The scheduled collection empties the descriptor cache when it deleted anything."""

    def setUp(self) -> None:
        self.driver = InMemoryDriver()
        self.content = Content(self.driver)
        self.cache = InMemoryCache()
        self.logged: list[dict[str, Any]] = []
        self.patch(gc_module, "_log", Logger(observer=self.logged.append))

    async def run_scheduled(self, cache: Any) -> str:
        options = CollectionOptions(min_age=0.0)
        summary: str = await scheduled_collection(self.driver, options, reactor, cache)()
        return summary

    async def test_emptied_after_deleting(self) -> None:
        orphan = await self.content.blob("app", b"orphan")
        await self.cache.set("app", LAYER, orphan, 6)
        summary = await self.run_scheduled(self.cache)
        self.assertIn("1 blobs and 0 manifests deleted", summary)
        self.assertIsNone(await self.cache.get("app", LAYER, orphan))
        self.assertEqual(self.logged, [])

    async def test_kept_when_nothing_deleted(self) -> None:
        digest = Digest.of(b"kept")
        await self.cache.set("app", LAYER, digest, 4)
        await self.run_scheduled(self.cache)
        self.assertEqual(await self.cache.get("app", LAYER, digest), 4)

    async def test_warns_when_not_emptied(self) -> None:
        await self.content.blob("app", b"orphan")

        class Unreachable(InMemoryCache):
            def clear(self) -> Deferred[bool]:
                return succeed(False)

        await self.run_scheduled(Unreachable())
        self.assertEqual(len(self.logged), 1)
        self.assertIn("could not be emptied", self.logged[0]["warning"])
