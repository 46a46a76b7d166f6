"""
C{txregistry check}: what it finds wrong in storage and what C{--repair}
does about it, on the in-memory driver; then the command itself, as a
process, on a filesystem folder.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from gc_support import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Content
from test_gc import SIGNATURE, Lines
from txregistry import configured
from txregistry.commands import main
from txregistry.commands.check import check_storage
from txregistry.commands.terminal import TerminalReporter
from txregistry.digest import Digest
from txregistry.drivers.errors import PathNotFoundError, StorageUnavailableError
from txregistry.drivers.filesystem import FilesystemDriver
from txregistry.drivers.inmemory import InMemoryDriver
from txregistry.interfaces import IFileReader, IStorageDriver
from txregistry.middleware.storage import DelegatingDriver
from txregistry.registry import paths
from txregistry.registry.check import READ_SIZE, CheckResult, StorageChecker, quarantine


async def check(
    driver: IStorageDriver, reporter: Lines | None = None, **options: Any
) -> CheckResult:
    return await StorageChecker(driver, reporter=reporter, **options).check()


def temporary_folder(test: TestCase) -> Path:
    """A new folder, removed after C{test}."""
    folder = Path(tempfile.mkdtemp(prefix="txr-check-"))
    test.addCleanup(shutil.rmtree, folder, ignore_errors=True)
    return folder


def lines(result: CheckResult) -> list[str]:
    return [str(problem) for problem in result.problems]


def kinds(result: CheckResult) -> list[str]:
    return [problem.kind for problem in result.problems]


@implementer(IFileReader)
class RecordingReader:
    """A reader that records the size of every read it is asked for."""

    def __init__(self, reader: IFileReader, driver: ReadRecordingDriver) -> None:
        self._reader = reader
        self._driver = driver

    def read(self, max_bytes: int) -> Deferred[bytes]:
        self._driver.reads.append(max_bytes)
        return self._reader.read(max_bytes)

    def close(self) -> Deferred[None]:
        self._driver.open_readers -= 1
        return self._reader.close()


class ReadRecordingDriver(DelegatingDriver):
    """Records blob reads: their sizes, and how many readers are open at most."""

    def __init__(self, driver: IStorageDriver) -> None:
        super().__init__(driver)
        self.reads: list[int] = []
        self.open_readers = 0
        self.most_open = 0

    async def _reader(self, path: str, offset: int) -> IFileReader:
        reader = await self.driver.reader(path, offset)
        self.open_readers += 1
        self.most_open = max(self.most_open, self.open_readers)
        return RecordingReader(reader, self)

    def reader(self, path: str, offset: int = 0) -> Deferred[IFileReader]:
        return Deferred.fromCoroutine(self._reader(path, offset))


class CheckTests(TestCase):
    """What a check finds, and that it changes nothing."""

    def setUp(self) -> None:
        self.driver = InMemoryDriver()
        self.content = Content(self.driver)

    async def populate(self) -> dict[str, Digest]:
        """A registry of every kind of content: images, an index, a referrer, tags."""
        c = self.content
        one = await c.image("app", "one", tag="v1")
        two = await c.image("app", "two", layers=[b"shared", b"two"])
        index = await c.index("app", [one, two], tag="multi")
        signature = await c.image("app", "sig", subject=one, artifact_type=SIGNATURE)
        other = await c.image("other", "three", tag="latest", layers=[b"shared"])
        return {"one": one, "two": two, "index": index, "signature": signature, "other": other}

    async def test_clean(self) -> None:
        """A registry as pushes leave it has no problems; everything is counted."""
        c = self.content
        await self.populate()
        sha512 = Digest.of(b"a sha512 blob", "sha512")
        await self.driver.put_content(paths.blob_data(sha512), b"a sha512 blob")
        await c.registry.repository("app").blobs.link(sha512)
        files = await c.files()
        result = await check(self.driver)
        self.assertEqual(result.problems, [])
        data = sorted(path for path in files if path.endswith("/data"))
        self.assertEqual(result.blobs, len(data))
        sizes = [len(await self.driver.get_content(path)) for path in data]
        self.assertEqual(result.bytes, sum(sizes))
        self.assertEqual(result.links, len([path for path in files if path.endswith("/link")]))
        self.assertEqual(
            result.summary(),
            f"{len(data)} blobs ({sum(sizes)} bytes) and {result.links} links checked: 0 problems",
        )
        self.assertEqual(await c.files(), files)

    async def test_empty(self) -> None:
        """Empty storage: nothing to check, and no failure."""
        result = await check(self.driver, repair=True)
        self.assertEqual(
            result.summary(True), "0 blobs (0 bytes) and 0 links checked: 0 problems, 0 repaired"
        )

    async def test_corrupt_blob(self) -> None:
        """A blob whose bytes do not hash to its digest is reported, and left alone."""
        c = self.content
        await self.populate()
        layer = Digest.of(b"shared")
        await self.driver.put_content(paths.blob_data(layer), b"SHARED")
        reporter = Lines()
        before = await c.files()
        result = await check(self.driver, reporter)
        line = f"corrupt blob {layer} (content hashes to {Digest.of(b'SHARED')})"
        self.assertEqual(lines(result), [line])
        self.assertEqual(result.problems[0].path, paths.blob_data(layer))
        self.assertEqual(reporter.lines, [line])
        self.assertEqual(await c.files(), before)

    async def test_corrupt_sha512_blob(self) -> None:
        """A blob stored under another algorithm is hashed with that algorithm."""
        digest = Digest.of(b"right", "sha512")
        await self.driver.put_content(paths.blob_data(digest), b"wrong")
        result = await check(self.driver)
        self.assertEqual(
            lines(result),
            [f"corrupt blob {digest} (content hashes to {Digest.of(b'wrong', 'sha512')})"],
        )

    async def test_blob_read_in_pieces(self) -> None:
        """A blob is read a megabyte at a time, several blobs at once."""
        c = self.content
        big = bytes(range(256)) * (10 * 1024)  # 2.5 MiB
        await c.blob("app", big)
        for number in range(4):
            await c.blob("app", f"small {number}".encode())
        driver = ReadRecordingDriver(self.driver)
        result = await check(driver, parallelism=3)
        self.assertEqual(result.problems, [])
        self.assertEqual(result.bytes, len(big) + 4 * len(b"small 0"))
        self.assertEqual(set(driver.reads), {READ_SIZE})
        # 3 reads of the big blob, 1 of each small one, and one more each to find the end.
        self.assertEqual(len(driver.reads), 3 + 4 + 5)
        self.assertEqual(driver.most_open, 3)
        self.assertEqual(driver.open_readers, 0)

    async def test_progress(self) -> None:
        """Each phase reports its progress."""
        await self.populate()
        reporter = Lines()
        result = await check(self.driver, reporter)
        last = {phase: (done, total) for phase, done, total in reporter.progress_calls}
        self.assertEqual(last["checking blobs"], (result.blobs, result.blobs))
        self.assertEqual(last["checking links"], (result.links, result.links))
        self.assertEqual(last["reading manifests"], (5, 5))

    async def test_dangling_layer_link(self) -> None:
        """A layer link to a blob that is not stored dangles."""
        c = self.content
        gone = await c.blob("app", b"gone")
        await self.driver.delete(paths.blob_data(gone))
        result = await check(self.driver)
        self.assertEqual(
            lines(result),
            [f"dangling link {paths.layer_link('app', gone)} -> {gone} (blob not stored)"],
        )

    async def test_dangling_tag(self) -> None:
        """A tag to a manifest that is not a revision dangles, and so does its history."""
        c = self.content
        await self.populate()
        ghost = Digest.of(b"no such manifest")
        await c.registry.repository("app").tags.tag("ghost", ghost)
        result = await check(self.driver)
        self.assertEqual(
            lines(result),
            [
                f"dangling link {paths.tag_index_link('app', 'ghost', ghost)} -> {ghost} "
                "(manifest not stored)",
                f"dangling link {paths.tag_current_link('app', 'ghost')} -> {ghost} "
                "(not a manifest of app)",
            ],
        )

    async def test_tag_of_unlinked_manifest(self) -> None:
        """A tag to a manifest that is stored but not a revision of its repository dangles."""
        c = self.content
        digests = await self.populate()
        await c.registry.repository("app").tags.tag("elsewhere", digests["other"])
        result = await check(self.driver)
        self.assertEqual(
            lines(result),
            [
                f"dangling link {paths.tag_current_link('app', 'elsewhere')} -> "
                f"{digests['other']} (not a manifest of app)"
            ],
        )

    async def test_bad_links(self) -> None:
        """A link that does not hold exactly its digest is reported."""
        digests = await self.populate()
        layer, other = Digest.of(b"shared"), Digest.of(b"two")
        await self.driver.put_content(paths.layer_link("app", layer), paths.link_content(other))
        revision = paths.manifest_revision_link("app", digests["one"])
        await self.driver.put_content(revision, paths.link_content(digests["one"]) + b"\n")
        await self.driver.put_content(paths.tag_current_link("app", "v1"), b"latest")
        tag = paths.tag_current_link("app", "multi")
        await self.driver.put_content(tag, b" " + paths.link_content(digests["index"]))
        binary = paths.tag_current_link("other", "latest")
        await self.driver.put_content(binary, b"\xff")
        result = await check(self.driver)
        self.assertEqual(
            lines(result),
            [
                f"bad link {paths.layer_link('app', layer)} (holds '{other}', not {layer})",
                f"bad link {revision} (holds '{digests['one']}\\n', not {digests['one']})",
                f"bad link {tag} (holds ' {digests['index']}', not {digests['index']})",
                f"bad link {paths.tag_current_link('app', 'v1')} (holds 'latest', not a digest)",
                f"bad link {binary} (holds '\ufffd', not a digest)",
            ],
        )

    async def test_missing_blob_referenced(self) -> None:
        """A manifest referencing a blob that is not stored is reported, with the link."""
        digests = await self.populate()
        layer = Digest.of(b"layer of one")
        await self.driver.delete(paths.blob_data(layer))
        result = await check(self.driver)
        self.assertEqual(
            lines(result),
            [
                f"missing reference app@{digests['one']} ({layer} is not stored)",
                f"dangling link {paths.layer_link('app', layer)} -> {layer} (blob not stored)",
            ],
        )
        self.assertEqual(
            result.problems[0].path, paths.manifest_revision_link("app", digests["one"])
        )

    async def test_unlinked_blob_referenced(self) -> None:
        """A manifest referencing a blob its repository does not link is reported."""
        digests = await self.populate()
        await self.driver.delete(paths.layer_link("other", Digest.of(b"shared")))
        result = await check(self.driver)
        self.assertEqual(
            lines(result),
            [
                f"missing reference other@{digests['other']} "
                f"({Digest.of(b'shared')} is not linked into other)"
            ],
        )

    async def test_index_child_not_a_revision(self) -> None:
        """An index listing a manifest that is not a revision of its repository is reported."""
        digests = await self.populate()
        await self.driver.delete(paths.manifest_revision("app", digests["two"]))
        result = await check(self.driver)
        self.assertEqual(
            lines(result),
            [
                f"missing reference app@{digests['index']} "
                f"({digests['two']} is not a manifest of app)"
            ],
        )

    async def test_pull_through_cache_misses_no_content(self) -> None:
        """
        In a pull-through cache's storage, blobs and child manifests are
        stored once pulled: their absence is no problem; everything else is
        checked as always.
        """
        digests = await self.populate()
        await self.driver.delete(paths.layer_link("app", Digest.of(b"layer of one")))
        await self.driver.delete(paths.blob_data(Digest.of(b"layer of one")))
        await self.driver.delete(paths.layer_link("other", Digest.of(b"shared")))
        await self.driver.delete(paths.manifest_revision("app", digests["two"]))
        self.assertEqual(lines(await check(self.driver, pull_through=True)), [])
        binary = paths.tag_current_link("app", "v1")
        await self.driver.put_content(binary, b"latest")
        self.assertEqual(
            lines(await check(self.driver, pull_through=True)),
            [f"bad link {binary} (holds 'latest', not a digest)"],
        )

    async def write_manifest(self, repository: str, document: dict[str, Any]) -> Digest:
        """Store a manifest as it is, bypassing the registry's checks."""
        content = json.dumps(document).encode()
        digest = Digest.of(content)
        await self.driver.put_content(paths.blob_data(digest), content)
        await self.driver.put_content(
            paths.manifest_revision_link(repository, digest), paths.link_content(digest)
        )
        return digest

    async def test_wrong_size(self) -> None:
        """A descriptor whose size is not the stored blob's is reported."""
        c = self.content
        config = await c.blob("app", b"{}")
        layer = await c.blob("app", b"layer")
        digest = await self.write_manifest(
            "app",
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": str(config), "size": 2},
                "layers": [{"mediaType": OCI_LAYER, "digest": str(layer), "size": 6}],
            },
        )
        result = await check(self.driver)
        self.assertEqual(
            lines(result),
            [f"wrong size app@{digest} ({layer} is 5 bytes, the manifest says 6)"],
        )

    async def test_foreign_layer_exempt(self) -> None:
        """A layer fetched from its URLs need be neither stored nor linked."""
        c = self.content
        config = await c.blob("app", b"{}")
        foreign = Digest.of(b"foreign layer")
        await self.write_manifest(
            "app",
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": str(config), "size": 2},
                "layers": [
                    {
                        "mediaType": OCI_LAYER,
                        "digest": str(foreign),
                        "size": 13,
                        "urls": ["https://example.com/layer"],
                    }
                ],
            },
        )
        result = await check(self.driver)
        self.assertEqual(result.problems, [])

    async def test_unreadable_manifest(self) -> None:
        """A revision whose content is not a JSON object is reported."""
        digest = await self.write_manifest("app", {})
        await self.driver.put_content(paths.blob_data(Digest.of(b"[1]")), b"[1]")
        listed = Digest.of(b"[1]")
        await self.driver.put_content(
            paths.manifest_revision_link("app", listed), paths.link_content(listed)
        )
        not_json = Digest.of(b"\x00 not json")
        await self.driver.put_content(paths.blob_data(not_json), b"\x00 not json")
        await self.driver.put_content(
            paths.manifest_revision_link("app", not_json), paths.link_content(not_json)
        )
        result = await check(self.driver)
        self.assertEqual(
            sorted(lines(result)),
            sorted(
                [
                    f"unreadable manifest app@{listed} (not a JSON object)",
                    f"unreadable manifest app@{not_json} (not JSON)",
                ]
            ),
        )
        self.assertNotIn(digest, [problem.subject for problem in result.problems])

    async def test_manifest_content_missing(self) -> None:
        """A revision whose content is gone is reported; its tag is not a problem of its own."""
        c = self.content
        digests = await self.populate()
        await self.driver.delete(paths.blob_data(digests["other"]))
        result = await check(self.driver)
        link = paths.manifest_revision_link("other", digests["other"])
        self.assertEqual(
            lines(result),
            [
                f"missing manifest {link} -> {digests['other']} "
                "(content not stored; a push of the manifest stores it again)"
            ],
        )
        self.assertTrue(await c.has_manifest("other", digests["other"]))

    async def test_stale_referrer(self) -> None:
        """A referrers entry whose manifest is gone from the repository dangles."""
        digests = await self.populate()
        await self.driver.delete(paths.manifest_revision("app", digests["signature"]))
        result = await check(self.driver)
        entry = paths.referrer_link("app", digests["one"], digests["signature"])
        self.assertEqual(
            lines(result),
            [f"dangling link {entry} -> {digests['signature']} (manifest gone from app)"],
        )

    async def test_wrong_referrer(self) -> None:
        """A referrers entry under a subject its manifest does not name is reported."""
        digests = await self.populate()
        entry = paths.referrer_link("app", digests["two"], digests["signature"])
        await self.driver.put_content(entry, paths.link_content(digests["signature"]))
        lonely = paths.referrer_link("app", digests["two"], digests["one"])
        await self.driver.put_content(lonely, paths.link_content(digests["one"]))
        result = await check(self.driver)
        self.assertEqual(
            sorted(lines(result)),
            sorted(
                [
                    f"wrong referrer {lonely} -> {digests['one']} (the manifest has no subject)",
                    f"wrong referrer {entry} -> {digests['signature']} "
                    f"(the manifest's subject is {digests['one']})",
                ]
            ),
        )

    async def test_removed_meanwhile(self) -> None:
        """A blob, manifest or link deleted between the walk and its reading is not a problem."""
        c = self.content
        digests = await self.populate()
        orphan = await c.blob("app", b"orphan")
        gone_blob = paths.blob_data(orphan)
        gone_link = paths.layer_link("app", orphan)
        gone_manifest = paths.blob_data(digests["two"])

        class Vanishing(DelegatingDriver):
            def reader(self, path: str, offset: int = 0) -> Deferred[IFileReader]:
                if path == gone_blob:
                    return fail(PathNotFoundError(path))
                return super().reader(path, offset)

            def get_content(self, path: str) -> Deferred[bytes]:
                if path in (gone_link, gone_manifest):
                    return fail(PathNotFoundError(path))
                return super().get_content(path)

        files = await c.files()
        result = await check(Vanishing(self.driver))
        self.assertEqual(result.problems, [])
        self.assertEqual(result.blobs, len([path for path in files if path.endswith("/data")]) - 1)
        self.assertEqual(result.links, len([path for path in files if path.endswith("/link")]) - 1)

    async def test_storage_failure(self) -> None:
        """A failing driver fails the check, with no reader left open."""
        await self.populate()
        driver = ReadRecordingDriver(self.driver)

        class Failing(DelegatingDriver):
            def reader(self, path: str, offset: int = 0) -> Deferred[IFileReader]:
                return driver.reader(path, offset).addCallback(lambda reader: FailingReader(reader))

        @implementer(IFileReader)
        class FailingReader:
            def __init__(self, reader: IFileReader) -> None:
                self.close = reader.close

            def read(self, max_bytes: int) -> Deferred[bytes]:
                return fail(StorageUnavailableError("the bucket went away"))

        await self.assertFailure(
            Deferred.fromCoroutine(check(Failing(self.driver))), StorageUnavailableError
        )
        self.assertEqual(driver.open_readers, 0)


class RepairTests(TestCase):
    """What --repair does, and what it leaves alone."""

    def setUp(self) -> None:
        self.driver = InMemoryDriver()
        self.content = Content(self.driver)

    async def push_blob(self, repository: str, data: bytes) -> None:
        """Upload C{data} as a client does: through an upload session."""
        session = await self.content.registry.repository(repository).uploads.start()
        appender = await session.open_appender()
        appender.write(data)
        await appender.close()
        await session.commit(Digest.of(data))

    async def test_corrupt_blob_moved_aside(self) -> None:
        """
        A corrupt layer is moved aside and the links to it go; the manifest
        that needs it is reported, not deleted, until a push stores it again.
        """
        c = self.content
        image = await c.image("app", "one", tag="v1")
        layer = Digest.of(b"layer of one")
        await self.driver.put_content(paths.blob_data(layer), b"rotten")
        # A push does not replace a stored blob, corrupt or not.
        await self.push_blob("app", b"layer of one")
        self.assertEqual(await self.driver.get_content(paths.blob_data(layer)), b"rotten")
        reporter = Lines()
        result = await check(self.driver, reporter, repair=True)
        self.assertEqual(
            reporter.lines,
            [
                f"corrupt blob {layer} (content hashes to {Digest.of(b'rotten')})",
                f"repaired: moved corrupt blob {layer} to {quarantine(layer)}",
                f"missing reference app@{image} ({layer} is not stored)",
                f"dangling link {paths.layer_link('app', layer)} -> {layer} (blob not stored)",
                f"repaired: deleted dangling layer link "
                f"{paths.layer_link('app', layer).removesuffix('/link')}",
            ],
        )
        self.assertEqual(len(result.repaired), 2)
        self.assertEqual(await self.driver.get_content(quarantine(layer)), b"rotten")
        self.assertFalse(await c.stored(layer))
        self.assertFalse(await c.linked("app", layer))
        self.assertTrue(await c.has_manifest("app", image))

        again = await check(self.driver)
        self.assertEqual(lines(again), [f"missing reference app@{image} ({layer} is not stored)"])

        await self.push_blob("app", b"layer of one")
        self.assertEqual((await check(self.driver)).problems, [])

    async def test_corrupt_manifest_moved_aside(self) -> None:
        """A corrupt manifest is moved aside; its revision and tag stay, reported."""
        c = self.content
        image = await c.image("app", "one", tag="v1")
        await self.driver.put_content(paths.blob_data(image), b"{}")
        result = await check(self.driver, repair=True)
        link = paths.manifest_revision_link("app", image)
        missing = (
            f"missing manifest {link} -> {image} "
            "(content not stored; a push of the manifest stores it again)"
        )
        self.assertEqual(kinds(result), ["corrupt blob", "missing manifest"])
        self.assertEqual(str(result.problems[1]), missing)
        self.assertTrue(await c.has_manifest("app", image))
        self.assertEqual(lines(await check(self.driver)), [missing])

    async def test_dangling_links_deleted(self) -> None:
        """
        Dangling layer links, tags, tag history and referrers entries are
        deleted; the problems repairing does not fix stay as they were.
        """
        c = self.content
        subject = await c.image("app", "subject", tag="latest")
        signature = await c.image("app", "sig", subject=subject, artifact_type=SIGNATURE)
        gone = await c.blob("app", b"gone")
        await self.driver.delete(paths.blob_data(gone))
        ghost = Digest.of(b"no such manifest")
        await c.registry.repository("app").tags.tag("ghost", ghost)
        await c.registry.repository("app").tags.tag("latest", ghost)
        await self.driver.delete(paths.manifest_revision("app", signature))
        # Not repaired: a bad link, a manifest missing a blob.
        layer = Digest.of(b"layer of subject")
        await self.driver.put_content(paths.layer_link("app", layer), b"nonsense")
        config = Digest.of(json.dumps({"name": "subject"}).encode())
        await self.driver.delete(paths.layer_link("app", config))
        files = await c.files()

        result = await check(self.driver, repair=True)
        deleted = {
            paths.layer_link("app", gone).removesuffix("/link"): "layer",
            paths.tag_index_link("app", "ghost", ghost).removesuffix("/link"): "tag history",
            paths.tag_index_link("app", "latest", ghost).removesuffix("/link"): "tag history",
            paths.tag("app", "ghost"): "tag",
            paths.tag("app", "latest"): "tag",
            paths.referrer_link("app", subject, signature).removesuffix("/link"): "referrer",
        }
        self.assertEqual(
            result.repaired,
            [f"deleted dangling {role} link {path}" for path, role in deleted.items()],
        )
        self.assertEqual(
            await c.files(),
            {path for path in files if not any(path.startswith(d + "/") for d in deleted)},
        )
        self.assertEqual(
            lines(await check(self.driver)),
            [
                f"missing reference app@{subject} ({config} is not linked into app)",
                f"bad link {paths.layer_link('app', layer)} (holds 'nonsense', not {layer})",
            ],
        )

    async def test_tag_with_history_deleted(self) -> None:
        """Deleting a dangling tag takes its history along, whatever it held."""
        c = self.content
        image = await c.image("app", "one", tag="v1")
        ghost = Digest.of(b"no such manifest")
        await c.registry.repository("app").tags.tag("v1", ghost)
        result = await check(self.driver, repair=True)
        history = paths.tag_index_link("app", "v1", ghost).removesuffix("/link")
        self.assertEqual(
            result.repaired,
            [
                f"deleted dangling tag history link {history}",
                f"deleted dangling tag link {paths.tag('app', 'v1')}",
            ],
        )
        self.assertEqual(kinds(result), ["dangling link", "dangling link"])
        self.assertIsNone(await c.registry.repository("app").tags.all())
        self.assertTrue(await c.has_manifest("app", image))

    async def repair_with_second_look(self, meanwhile: Callable[[str], Awaitable[Any]]) -> None:
        """
        Repair a dangling layer link, calling C{meanwhile} with its path
        just before the repair reads it again; the link must be kept.
        """
        gone = await self.content.blob("app", b"gone")
        await self.driver.delete(paths.blob_data(gone))
        link = paths.layer_link("app", gone)
        driver = self.driver

        class SecondLook(DelegatingDriver):
            reads = 0

            async def _get(self, path: str) -> bytes:
                if path == link:
                    self.reads += 1
                    if self.reads == 2:
                        await meanwhile(path)
                return await driver.get_content(path)

            def get_content(self, path: str) -> Deferred[bytes]:
                return Deferred.fromCoroutine(self._get(path))

        result = await check(SecondLook(driver), repair=True)
        self.assertEqual(kinds(result), ["dangling link"])
        self.assertEqual(result.repaired, [])

    async def test_blob_pushed_meanwhile(self) -> None:
        """A dangling link whose blob a push stores before the repair is kept."""
        gone = Digest.of(b"gone")

        async def push(path: str) -> None:
            await self.driver.put_content(paths.blob_data(gone), b"gone")

        await self.repair_with_second_look(push)
        self.assertTrue(await self.content.linked("app", gone))
        self.assertEqual((await check(self.driver)).problems, [])

    async def test_link_written_meanwhile(self) -> None:
        """A dangling link written again before the repair is kept."""

        async def rewrite(path: str) -> None:
            await self.driver.put_content(path, b"rewritten")

        await self.repair_with_second_look(rewrite)
        self.assertEqual(
            await self.driver.get_content(paths.layer_link("app", Digest.of(b"gone"))), b"rewritten"
        )

    async def test_link_deleted_meanwhile(self) -> None:
        """A dangling link deleted before the repair is not reported repaired."""

        async def delete(path: str) -> None:
            await self.driver.delete(path)

        await self.repair_with_second_look(delete)
        self.assertFalse(await self.content.linked("app", Digest.of(b"gone")))

    async def test_corrupt_blob_deleted_meanwhile(self) -> None:
        """
        A corrupt blob deleted before it is moved aside is not reported
        moved; the links to it dangle, and go.
        """
        c = self.content
        layer = await c.blob("app", b"layer")
        await self.driver.put_content(paths.blob_data(layer), b"rotten")

        class Vanishing(DelegatingDriver):
            async def _move(self, source: str) -> None:
                await self.driver.delete(source)  # a collector got there first
                raise PathNotFoundError(source)

            def move(self, source: str, dest: str) -> Deferred[None]:
                return Deferred.fromCoroutine(self._move(source))

        result = await check(Vanishing(self.driver), repair=True)
        self.assertEqual(kinds(result), ["corrupt blob", "dangling link"])
        self.assertEqual(
            result.repaired,
            [f"deleted dangling layer link {paths.layer_link('app', layer).removesuffix('/link')}"],
        )


class CheckStorageTests(TestCase):
    """The command's work in this process: what it prints, and its exit status."""

    def setUp(self) -> None:
        self.driver: IStorageDriver = InMemoryDriver()
        self.patch(configured, "build_driver", lambda config: self.driver)
        self.config = temporary_folder(self) / "config.yml"
        self.config.write_text(yaml.safe_dump({"version": 0.1, "storage": {"inmemory": {}}}))
        self.output = io.StringIO()
        self.errors = io.StringIO()
        self.patch(sys, "stdout", self.output)
        self.patch(sys, "stderr", self.errors)

    async def run_check(self, repair: bool = False, quiet: bool = False) -> int:
        reporter = TerminalReporter(self.output, self.errors, quiet=quiet)
        return await check_storage(str(self.config), repair, 4, reporter)

    async def test_problems(self) -> None:
        """Problems: one line each, the summary, exit status 1."""
        layer = await Content(self.driver).blob("app", b"layer")
        await self.driver.put_content(paths.blob_data(layer), b"LAYER")
        self.assertEqual(await self.run_check(), 1)
        self.assertEqual(
            self.output.getvalue(),
            f"corrupt blob {layer} (content hashes to {Digest.of(b'LAYER')})\n"
            "1 blobs (5 bytes) and 1 links checked: 1 problems\n",
        )
        self.assertEqual(self.errors.getvalue(), "")

    async def test_quiet(self) -> None:
        """Quiet: the summary alone."""
        layer = await Content(self.driver).blob("app", b"layer")
        await self.driver.put_content(paths.blob_data(layer), b"LAYER")
        self.assertEqual(await self.run_check(repair=True, quiet=True), 1)
        self.assertEqual(
            self.output.getvalue(),
            "1 blobs (5 bytes) and 1 links checked: 2 problems, 2 repaired\n",
        )

    async def test_storage_failure(self) -> None:
        """A storage failure: one line on standard error, exit status 1."""

        class Unavailable(DelegatingDriver):
            def marked_folders(self, *args: Any) -> Deferred[list[str]]:
                return fail(StorageUnavailableError("the bucket went away"))

        self.driver = Unavailable(InMemoryDriver())
        self.assertEqual(await self.run_check(), 1)
        self.assertEqual(
            self.errors.getvalue(),
            "txregistry: failed to check: StorageUnavailableError: the bucket went away\n",
        )
        self.assertEqual(self.output.getvalue(), "")

    async def test_os_error(self) -> None:
        """An operating system error is said in its own words."""

        class Broken(DelegatingDriver):
            def marked_folders(self, *args: Any) -> Deferred[list[str]]:
                return fail(PermissionError(13, "Permission denied"))

        self.driver = Broken(InMemoryDriver())
        self.assertEqual(await self.run_check(), 1)
        self.assertEqual(
            self.errors.getvalue(), "txregistry: failed to check: [Errno 13] Permission denied\n"
        )

    def test_parallel_at_least_one(self) -> None:
        """--parallel 0 is a bad argument: exit status 2, said in one line."""
        self.assertEqual(main(["check", "--parallel", "0", str(self.config)]), 2)
        self.assertEqual(self.errors.getvalue(), "txregistry: --parallel: must be at least 1\n")


class CommandTests(TestCase):
    """C{python -m txregistry check CONFIG}, as a process, on a filesystem folder."""

    def setUp(self) -> None:
        self.root = temporary_folder(self)
        self.driver = FilesystemDriver(str(self.root / "data"))
        self.content = Content(self.driver)
        self.config = self.root / "config.yml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "version": 0.1,
                    "storage": {"filesystem": {"rootdirectory": str(self.root / "data")}},
                }
            )
        )

    def txregistry(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "txregistry", *arguments],
            capture_output=True,
            text=True,
            timeout=60,
        )

    async def test_clean(self) -> None:
        """A clean folder: the summary, exit status 0."""
        await self.content.image("app", "one", tag="v1")
        size = sum(self.content.sizes.values())
        done = self.txregistry("check", str(self.config))
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout, f"3 blobs ({size} bytes) and 5 links checked: 0 problems\n")
        self.assertEqual(done.stderr, "")

    async def test_corrupt_then_repair(self) -> None:
        """
        A corrupted blob file: reported, exit status 1; --repair moves it
        aside, and a second check exits 0.
        """
        await self.content.image("app", "one", tag="v1")
        pushed = await self.content.blob("app", b"a layer nothing uses yet")
        (self.root / "data" / paths.blob_data(pushed).lstrip("/")).write_bytes(b"bit rot")
        done = self.txregistry("check", str(self.config))
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertIn(
            f"corrupt blob {pushed} (content hashes to {Digest.of(b'bit rot')})\n", done.stdout
        )
        self.assertTrue(done.stdout.endswith(": 1 problems\n"), done.stdout)

        repaired = self.txregistry("check", "--repair", str(self.config))
        self.assertEqual(repaired.returncode, 1, repaired.stderr)
        self.assertIn(f"repaired: moved corrupt blob {pushed} to ", repaired.stdout)
        self.assertTrue(repaired.stdout.endswith(": 2 problems, 2 repaired\n"), repaired.stdout)
        self.assertEqual(
            (self.root / "data" / quarantine(pushed).lstrip("/")).read_bytes(), b"bit rot"
        )

        again = self.txregistry("check", str(self.config))
        self.assertEqual(again.returncode, 0, again.stdout + again.stderr)

    def test_unreadable_config(self) -> None:
        """A config file that cannot be read: one line on standard error, exit status 1."""
        done = self.txregistry("check", str(self.root / "missing.yml"))
        self.assertEqual(done.returncode, 1)
        self.assertEqual(done.stdout, "")
        self.assertEqual(
            done.stderr,
            f"txregistry: configuration error: {self.root / 'missing.yml'}: cannot read the "
            "configuration file: No such file or directory\n",
        )

    def test_bad_flag(self) -> None:
        """An unknown flag: usage on standard error, exit status 2."""
        done = self.txregistry("check", "--frobnicate", str(self.config))
        self.assertEqual(done.returncode, 2)
        self.assertIn("unrecognized arguments: --frobnicate", done.stderr)
        self.assertNotIn("Traceback", done.stderr)
