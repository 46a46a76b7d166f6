# -*- test-case-name: tests.test_check -*-
"""
Checking storage: that every blob's bytes hash to the digest it is stored
under, that every link of every repository holds its digest and leads to
something stored, and that every manifest revision parses and has what it
references stored and linked into its repository.

Blobs are read in pieces (L{READ_SIZE}), several at once; everything else
comes from one walk (L{txregistry.registry.inventory}).  A link the walk
finds leading nowhere is confirmed by asking storage again before it is
reported (and again before repairing deletes it), so content a push wrote
since the walk is not taken for missing.

Repairing does two things only.  A corrupt blob is moved aside (to
L{quarantine}), so that the next push of its digest stores it again (an
upload writes a blob only where none is stored).  A dangling link is
deleted: a layer link or tag history entry to a blob that is not stored, a
tag to a manifest that is not a revision of its repository, a referrers
entry whose manifest is gone.  Everything else is reported and left as it
is: a manifest revision whose content is gone (a push of the manifest
stores it again), a manifest that references a missing blob, a link that
holds the wrong digest.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from txregistry.digest import Digest
from txregistry.drivers.base import exists
from txregistry.drivers.errors import PathNotFoundError
from txregistry.errors import RegistryError
from txregistry.interfaces import FileInfo, IStorageDriver
from txregistry.registry import paths
from txregistry.registry.gc import Reporter, SilentReporter
from txregistry.registry.inventory import RepositoryInventory, read_blobs, read_repositories
from txregistry.registry.parallel import DEFAULT_PARALLELISM, map_bounded
from txregistry.registry.reachability import (
    ManifestReferences,
    ManifestUnreadable,
    descriptor_digest,
    references_of,
)
from txregistry.threads import in_thread

T = TypeVar("T")
R = TypeVar("R")

# How much of a blob one read asks for: a blob is never in memory whole.
READ_SIZE = 1024 * 1024

# The kinds of link a repository holds, each checked as its own.
LAYER = "layer"
REVISION = "revision"
TAG = "tag"
TAG_HISTORY = "tag history"
REFERRER = "referrer"


def quarantine(digest: Digest) -> str:
    """Where repairing moves a corrupt blob's data: out of the way of pushes and reads."""
    return f"{paths.TXREGISTRY}/quarantine/{digest.algorithm}/{digest.hex}/data"


@dataclass(frozen=True)
class Problem:
    """
    One thing wrong in storage.

    @ivar kind: what sort of problem: C{corrupt blob}, C{bad link},
        C{dangling link}, C{missing manifest}, C{unreadable manifest},
        C{missing reference}, C{wrong size} or C{wrong referrer}.
    @ivar path: the storage path at fault.
    @ivar detail: what is wrong with it.
    @ivar subject: what the report names, when not C{path} (a digest, a
        manifest of a repository, a link and its target).
    """

    kind: str
    path: str
    detail: str
    subject: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.subject or self.path} ({self.detail})"


@dataclass
class CheckResult:
    """
    What a check found and, repairing, did.

    @ivar blobs: the blobs whose content was verified.
    @ivar bytes: their total size (their data files' sizes).
    @ivar links: the link files read.
    @ivar problems: everything found wrong, in the order reported.
    @ivar repaired: what repairing did, one line each.
    """

    blobs: int = 0
    bytes: int = 0
    links: int = 0
    problems: list[Problem] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    def summary(self, repair: bool = False) -> str:
        """One line: what was checked and how many problems were found (and repaired)."""
        return (
            f"{self.blobs} blobs ({self.bytes} bytes) and {self.links} links checked: "
            f"{len(self.problems)} problems"
            + (f", {len(self.repaired)} repaired" if repair else "")
        )


@dataclass(frozen=True)
class _LinkFile:
    """
    A link file to check.

    @ivar digest: the digest its path names; L{None} for a tag's current
        link, named by its content alone.
    @ivar subject: a referrers entry's subject.
    @ivar removal: what repairing deletes when the link dangles.
    """

    repository: RepositoryInventory
    role: str
    path: str
    digest: Digest | None
    subject: Digest | None = None

    @property
    def removal(self) -> str:
        if self.role == TAG:
            return self.path.removesuffix("/current/link")
        return self.path.rsplit("/", 1)[0]


@dataclass(frozen=True)
class _Manifest:
    """
    What a manifest's content says: what it references, the sizes its
    descriptors state, and its foreign layers (fetched from their C{urls},
    so never stored); or, for content that is not a manifest, why.
    """

    references: ManifestReferences | None
    sizes: dict[Digest, int] = field(default_factory=dict)
    foreign: frozenset[Digest] = frozenset()
    unreadable: str = ""


class StorageChecker:
    """
    Checks the storage behind C{driver}, and repairs it when asked (see
    the module docstring for what that does).

    @param parallelism: storage requests (and blob reads) in flight at once.
    @param pull_through: whether the storage is a pull-through cache's (a
        C{proxy} section), whose manifests' blobs and children are stored
        only once pulled: one not stored is then no problem.
    """

    def __init__(
        self,
        driver: IStorageDriver,
        repair: bool = False,
        parallelism: int = DEFAULT_PARALLELISM,
        reporter: Reporter | None = None,
        pull_through: bool = False,
    ) -> None:
        self.driver = driver
        self.repair = repair
        self.pull_through = pull_through
        self.parallelism = parallelism
        self.reporter: Reporter = reporter or SilentReporter()
        self._stored: dict[Digest, FileInfo] = {}
        self._corrupt: set[Digest] = set()
        self._manifests: dict[Digest, _Manifest] = {}

    async def check(self) -> CheckResult:
        """
        Check everything, repairing as it goes when asked to.

        @raise Exception: what the driver failed with, for a failure other
            than a path that is gone (which is content removed meanwhile).
        """
        result = CheckResult()
        # Repositories first: whatever they link to was stored before the
        # link was written, so the blob walk after them finds it.
        inventories = await read_repositories(self.driver, self.parallelism, tags=False)
        self._stored = await read_blobs(self.driver, self.parallelism)
        await self._check_blobs(result)
        await self._read_manifests(inventories)
        for inventory in inventories:
            self._report(result, list(self._check_references(inventory)))
        await self._check_links(inventories, result)
        return result

    async def _each(
        self, phase: str, function: Callable[[T], Awaitable[R]], items: list[T]
    ) -> list[R]:
        """L{map_bounded}, each call that ends counted as progress of C{phase}."""
        done = 0

        async def counted(item: T) -> R:
            nonlocal done
            found = await function(item)
            done += 1
            self.reporter.progress(phase, done, len(items))
            return found

        return await map_bounded(counted, items, self.parallelism)

    def _report(self, result: CheckResult, problems: list[Problem]) -> None:
        for problem in problems:
            result.problems.append(problem)
            self.reporter.line(str(problem))

    def _repaired(self, result: CheckResult, what: str) -> None:
        result.repaired.append(what)
        self.reporter.line(f"repaired: {what}")

    # -- blobs -----------------------------------------------------------------------

    async def _check_blobs(self, result: CheckResult) -> None:
        """Hash every stored blob; report (and, repairing, move aside) the corrupt ones."""
        blobs = sorted(self._stored, key=str)
        hashed = await self._each("checking blobs", self._content_digest, blobs)
        for digest, found in zip(blobs, hashed, strict=True):
            if found is None:
                del self._stored[digest]  # deleted meanwhile
                continue
            result.blobs += 1
            result.bytes += self._stored[digest].size
            if found == digest:
                continue
            self._corrupt.add(digest)
            data = paths.blob_data(digest)
            self._report(
                result,
                [Problem("corrupt blob", data, f"content hashes to {found}", str(digest))],
            )
            if self.repair:
                await self._quarantine(digest, result)

    async def _content_digest(self, digest: Digest) -> Digest | None:
        """What the blob's data hashes to by its digest's algorithm; L{None} when gone."""
        hasher = digest.hasher()
        try:
            reader = await self.driver.reader(paths.blob_data(digest))
        except PathNotFoundError:
            return None
        try:
            while chunk := await reader.read(READ_SIZE):
                await in_thread(hasher.update, chunk)
        finally:
            await reader.close()
        return Digest(digest.algorithm, hasher.hexdigest())

    async def _quarantine(self, digest: Digest, result: CheckResult) -> None:
        try:
            await self.driver.move(paths.blob_data(digest), quarantine(digest))
        except PathNotFoundError:
            return  # deleted meanwhile: nothing left to move
        finally:
            # Either way it is no longer stored: links to it now dangle.
            del self._stored[digest]
        self._repaired(result, f"moved corrupt blob {digest} to {quarantine(digest)}")

    # -- manifests -------------------------------------------------------------------

    async def _read_manifests(self, inventories: Iterable[RepositoryInventory]) -> None:
        """Read what each sound, stored manifest revision references, once per digest."""
        digests = sorted(
            {
                digest
                for inventory in inventories
                for digest in inventory.revisions
                if digest in self._stored and digest not in self._corrupt
            },
            key=str,
        )

        async def read(digest: Digest) -> None:
            try:
                content = await self.driver.get_content(paths.blob_data(digest))
            except PathNotFoundError:
                return  # deleted meanwhile
            self._manifests[digest] = _read_manifest(content)

        await self._each("reading manifests", read, digests)

    def _check_references(self, inventory: RepositoryInventory) -> Iterator[Problem]:
        """The problems of what each manifest of C{inventory} references."""
        name = inventory.name
        for digest in sorted(inventory.revisions, key=str):
            manifest = self._manifests.get(digest)
            if manifest is None:
                continue  # not stored or corrupt: reported as such
            path = inventory.revisions[digest].path
            subject = f"{name}@{digest}"
            if manifest.references is None:
                yield Problem("unreadable manifest", path, manifest.unreadable, subject)
                continue
            children = manifest.references.children
            for blob in manifest.references.blobs:
                if blob in manifest.foreign:
                    continue
                missing = None
                if blob in children:
                    if blob not in inventory.revisions:
                        missing = f"{blob} is not a manifest of {name}"
                elif blob not in self._stored:
                    missing = f"{blob} is not stored"
                elif blob not in inventory.layers:
                    missing = f"{blob} is not linked into {name}"
                if missing is not None:
                    if not self.pull_through:
                        yield Problem("missing reference", path, missing, subject)
                    # A cache's content comes when pulled: not cached is no problem.
                    continue
                stated = manifest.sizes.get(blob)
                info = self._stored.get(blob)
                if stated is not None and info is not None and stated != info.size:
                    yield Problem(
                        "wrong size",
                        path,
                        f"{blob} is {info.size} bytes, the manifest says {stated}",
                        subject,
                    )

    # -- links -----------------------------------------------------------------------

    async def _check_links(
        self, inventories: Iterable[RepositoryInventory], result: CheckResult
    ) -> None:
        """Check every link file; repairing, delete the dangling ones."""
        links = [link for inventory in inventories for link in _links_of(inventory)]

        async def check(link: _LinkFile) -> tuple[bytes, list[Problem]] | None:
            try:
                content = await self.driver.get_content(link.path)
            except PathNotFoundError:
                return None  # deleted meanwhile
            return content, await self._link_problems(link, content)

        checked_links = await self._each("checking links", check, links)
        for link, checked in zip(links, checked_links, strict=True):
            if checked is None:
                continue
            content, problems = checked
            result.links += 1
            self._report(result, problems)
            if self.repair and any(problem.kind == "dangling link" for problem in problems):
                await self._delete_dangling(link, content, result)

    async def _link_problems(self, link: _LinkFile, content: bytes) -> list[Problem]:
        """What is wrong with C{link}, which holds C{content}."""
        shown = content[:100].decode("ascii", "replace")
        target = link.digest
        if target is None:
            target = _link_target(content)
            if target is None:
                return [Problem("bad link", link.path, f"holds {shown!r}, not a digest")]
        problems = []
        if content != paths.link_content(target):
            problems.append(Problem("bad link", link.path, f"holds {shown!r}, not {target}"))
        subject = f"{link.path} -> {target}"
        name = link.repository.name
        if await self._dangles(link, target):
            if link.role == REVISION:
                problems.append(
                    Problem(
                        "missing manifest",
                        link.path,
                        "content not stored; a push of the manifest stores it again",
                        subject,
                    )
                )
            else:
                detail = {
                    LAYER: "blob not stored",
                    TAG_HISTORY: "manifest not stored",
                    TAG: f"not a manifest of {name}",
                    REFERRER: f"manifest gone from {name}",
                }[link.role]
                problems.append(Problem("dangling link", link.path, detail, subject))
        elif link.role == REFERRER:
            manifest = self._manifests.get(target)
            found = None if manifest is None else manifest.references
            if found is not None and found.subject != link.subject:
                detail = (
                    "the manifest has no subject"
                    if found.subject is None
                    else f"the manifest's subject is {found.subject}"
                )
                problems.append(Problem("wrong referrer", link.path, detail, subject))
        return problems

    async def _dangles(self, link: _LinkFile, target: Digest) -> bool:
        """
        Whether C{link}'s target is missing: not in the walk, and still not
        in storage (a push since the walk may have stored it).  A layer link
        needs the blob stored, a tag or referrers entry needs a revision of
        its repository, and a tag's history needs either (a manifest deleted
        from the repository is stored until garbage collection).
        """
        revision = paths.manifest_revision_link(link.repository.name, target)
        data = paths.blob_data(target)
        if link.role in (TAG, REFERRER):
            known, places = target in link.repository.revisions, [revision]
        elif link.role == TAG_HISTORY:
            known = target in link.repository.revisions or target in self._stored
            places = [data, revision]
        else:
            known, places = target in self._stored, [data]
        if known:
            return False
        for path in places:
            if await exists(self.driver, path):
                return False
        return True

    async def _delete_dangling(self, link: _LinkFile, content: bytes, result: CheckResult) -> None:
        """
        Delete a dangling link, unless a push has since written it again or
        stored what it leads to.
        """
        target = link.digest or _link_target(content)
        assert target is not None
        try:
            if await self.driver.get_content(link.path) != content:
                return
            if not await self._dangles(link, target):
                return
            await self.driver.delete(link.removal)
        except PathNotFoundError:
            return  # deleted meanwhile
        self._repaired(result, f"deleted dangling {link.role} link {link.removal}")


def _links_of(inventory: RepositoryInventory) -> Iterator[_LinkFile]:
    """
    Every link file of a repository, each kind in path order.  A tag's
    history comes before the tag, since deleting a dangling tag deletes
    its history with it.
    """
    for role, links in (
        (LAYER, inventory.layers.values()),
        (REVISION, inventory.revisions.values()),
        (TAG_HISTORY, [link for found in inventory.tag_history.values() for link in found]),
    ):
        for link in sorted(links, key=lambda link: link.path):
            yield _LinkFile(inventory, role, link.path, link.digest)
    for tag in sorted(inventory.tags):
        yield _LinkFile(inventory, TAG, inventory.tags[tag], None)
    for subject, link in sorted(inventory.referrers, key=lambda entry: entry[1].path):
        yield _LinkFile(inventory, REFERRER, link.path, link.digest, subject)


def _link_target(content: bytes) -> Digest | None:
    """
    The digest a tag's link holds, read as leniently as the registry reads
    it (surrounding white space is a problem of its own, not a lost tag).
    """
    try:
        return Digest.parse(content.strip().decode("ascii"))
    except (UnicodeDecodeError, RegistryError):
        return None


def _read_manifest(content: bytes) -> _Manifest:
    """What the manifest C{content} references, with its descriptors' sizes and foreign layers."""
    try:
        references = references_of(content)
    except ManifestUnreadable as error:
        return _Manifest(None, unreadable=str(error))
    document = json.loads(content)
    sizes: dict[Digest, int] = {}
    foreign: set[Digest] = set()
    for key in ("config", "layers", "manifests"):
        value = document.get(key)
        for entry in value if isinstance(value, list) else [value]:
            digest = descriptor_digest(entry)
            if digest is None:
                continue
            size = entry.get("size")
            if isinstance(size, int) and not isinstance(size, bool):
                sizes[digest] = size
            if key == "layers" and isinstance(entry.get("urls"), list) and entry["urls"]:
                foreign.add(digest)
    return _Manifest(references, sizes, frozenset(foreign))
