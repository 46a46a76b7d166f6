# -*- test-case-name: tests.test_api_manifests -*-
"""
A repository's manifests, tags and referrers, in Distribution's layout:
manifest bytes are blobs, linked into the repository under
C{_manifests/revisions}; a tag is a C{current} link under C{_manifests/tags}.

Referrers are indexed under C{_manifests/referrers} (our own addition, which
Distribution passes over): one link per manifest that names a subject,
written after the manifest's revision and removed after it, and listed only
while the revision exists, so the list is right under concurrent pushes and
deletes, and even if Distribution deletes a manifest behind our back.
"""

from __future__ import annotations

import dataclasses
import re
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlsplit

from txregistry.cache import REVISION
from txregistry.digest import Digest
from txregistry.drivers.base import get_contents, list_page
from txregistry.drivers.errors import PathNotFoundError
from txregistry.errors import (
    BLOB_UNKNOWN,
    MANIFEST_BLOB_UNKNOWN,
    MANIFEST_UNKNOWN,
    RegistryError,
)
from txregistry.interfaces import ICache, IStorageDriver
from txregistry.registry import paths
from txregistry.registry.blobs import LinkedBlobStore
from txregistry.registry.manifest_formats import (
    LAYER_TYPES,
    Descriptor,
    Manifest,
    parse_manifest,
)
from txregistry.registry.sweep_notice import read_notice

# The descriptor cache's kind for manifest revisions.


@dataclass(frozen=True)
class URLPolicy:
    """
    Which foreign layer URLs a manifest may carry
    (C{validation.manifests.urls}); with validation disabled, any
    http(s) URL.
    """

    allow: tuple[re.Pattern[str], ...] | None
    deny: tuple[re.Pattern[str], ...] | None

    @classmethod
    def from_config(cls, disabled: bool, allow: list[str], deny: list[str]) -> URLPolicy:
        """
        As Distribution builds it: enabled with no allow list allows nothing;
        a URL is allowed when an allow pattern matches and no deny pattern
        does.  Distribution joins each list into one pattern with C{|};
        each is compiled alone here, since C{re} refuses a pattern's flags
        (C{(?i)}) once they are not at the start of the whole.
        """
        if disabled:
            return cls(None, None)
        return cls(
            tuple(re.compile(pattern) for pattern in allow),
            tuple(re.compile(pattern) for pattern in deny) or None,
        )

    def permits(self, url: str) -> bool:
        """Whether a layer may be fetched from C{url} instead of the registry."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or parts.fragment:
            return False
        if self.allow is not None and not any(pattern.search(url) for pattern in self.allow):
            return False
        return not (self.deny is not None and any(pattern.search(url) for pattern in self.deny))


class ParsedManifests:
    """
    A bounded cache of parsed manifests by digest: content-addressed, so an
    entry never goes stale.  The least recently used go first once it holds
    C{limit} manifests, or more than C{byte_limit} bytes of them: manifests
    may be 4 MiB each, and what is being pulled at a time is mostly a few,
    or the referrers of one subject (a thousand signatures and attestations
    fit: a list longer than the cache is read from storage every time).
    A parsed manifest takes about four times its bytes in memory (a 417-byte
    image manifest: 1.6 KiB), so the cache stays under some 20 MiB.
    """

    def __init__(self, limit: int = 1024, byte_limit: int = 4 * 1024 * 1024) -> None:
        self._entries: OrderedDict[Digest, Manifest] = OrderedDict()
        self._limit = limit
        self._byte_limit = byte_limit
        self._bytes = 0

    def get(self, digest: Digest) -> Manifest | None:
        """The parsed manifest, if cached."""
        manifest = self._entries.get(digest)
        if manifest is not None:
            self._entries.move_to_end(digest)
        return manifest

    def put(self, manifest: Manifest) -> None:
        """Remember a parsed manifest (one larger than the byte limit is not kept)."""
        entries = self._entries
        previous = entries.pop(manifest.digest, None)
        if previous is not None:
            self._bytes -= len(previous.content)
        if len(manifest.content) > self._byte_limit:
            return
        entries[manifest.digest] = manifest
        self._bytes += len(manifest.content)
        while len(entries) > self._limit or self._bytes > self._byte_limit:
            _, dropped = entries.popitem(last=False)
            self._bytes -= len(dropped.content)

    def __len__(self) -> int:
        """How many manifests are kept."""
        return len(self._entries)


class ManifestStore:
    """The manifests of one repository."""

    def __init__(
        self,
        driver: IStorageDriver,
        repository: str,
        blobs: LinkedBlobStore,
        parsed: ParsedManifests,
        url_policy: URLPolicy,
        cache: ICache,
    ) -> None:
        self.cache = cache
        self.driver = driver
        self.repository = repository
        self.blobs = blobs
        self.parsed = parsed
        self.url_policy = url_policy

    async def exists(self, digest: Digest) -> bool:
        """Whether the manifest is part of this repository."""
        if await self.cache.get(self.repository, REVISION, digest) is not None:
            return True
        try:
            info = await self.driver.stat(paths.manifest_revision_link(self.repository, digest))
        except PathNotFoundError:
            return False
        await self.cache.set(self.repository, REVISION, digest, info.size)
        return True

    async def get(self, digest: Digest) -> Manifest:
        """
        A manifest of this repository.

        @raise RegistryError: MANIFEST_UNKNOWN when it is not.
        """
        if not await self.exists(digest):
            raise MANIFEST_UNKNOWN(f"unknown manifest {digest}")
        manifest = self.parsed.get(digest)
        if manifest is not None:
            return manifest
        try:
            content = await self.driver.get_content(paths.blob_data(digest))
        except PathNotFoundError:
            raise MANIFEST_UNKNOWN(f"manifest {digest} has no content") from None
        # Parsing names it by its sha256 digest; it was pushed by this one.
        manifest = dataclasses.replace(parse_manifest(content), digest=digest)
        self.parsed.put(manifest)
        return manifest

    async def _check_references(self, manifest: Manifest) -> None:
        missing: list[RegistryError] = []
        if manifest.is_index:
            for child in manifest.manifests:
                if not await self.exists(child.digest):
                    missing.append(MANIFEST_BLOB_UNKNOWN(str(child.digest)))
        else:
            assert manifest.config is not None
            for descriptor in (manifest.config, *manifest.layers):
                if not await self._descriptor_available(descriptor):
                    missing.append(MANIFEST_BLOB_UNKNOWN(str(descriptor.digest)))
        if missing:
            first, *rest = missing
            raise RegistryError(first.error_code, first.detail, also=rest)

    async def _descriptor_available(self, descriptor: Descriptor) -> bool:
        if descriptor.urls:
            # A foreign layer is fetched from its URLs, which must be allowed;
            # any other kind of content must be in the registry.
            return descriptor.media_type in LAYER_TYPES and all(
                self.url_policy.permits(url) for url in descriptor.urls
            )
        try:
            await self.blobs.stat(descriptor.digest)
        except RegistryError as error:
            if error.error_code is BLOB_UNKNOWN:
                return False
            raise
        return True

    async def put(self, manifest: Manifest) -> None:
        """
        Store a checked manifest: every blob or manifest it references must
        be in this repository (MANIFEST_BLOB_UNKNOWN otherwise, nothing
        stored).  Its subject need not exist (OCI 1.1).
        """
        await self._check_references(manifest)
        await self.store(manifest)

    async def store(self, manifest: Manifest) -> None:
        """
        Store a manifest without asking for what it references: a
        pull-through cache's, whose blobs come when they are pulled.
        """
        blob_path = paths.blob_data(manifest.digest)
        try:
            await self.driver.stat(blob_path)
        except PathNotFoundError:
            await self.driver.put_content(blob_path, manifest.content)
        await self.driver.put_content(
            paths.manifest_revision_link(self.repository, manifest.digest),
            paths.link_content(manifest.digest),
        )
        self.parsed.put(manifest)
        if manifest.subject is not None:
            await self.driver.put_content(
                paths.referrer_link(self.repository, manifest.subject.digest, manifest.digest),
                paths.link_content(manifest.digest),
            )
        await self._check_not_swept(manifest)

    async def _check_not_swept(self, manifest: Manifest) -> None:
        """
        Fail the push, taking back the revision just written, when a garbage
        collection is sweeping content the manifest needs (see
        L{txregistry.registry.sweep_notice}): checked after the revision is
        written, so that a collection that starts later sees it.
        """
        notice = await read_notice(self.driver)
        if notice is None:
            return
        needed = [manifest.digest, *(d.digest for d in _referenced(manifest))]
        threatened = notice.threatens(needed)
        if not threatened:
            return
        for path in (
            paths.manifest_revision(self.repository, manifest.digest),
            *(
                [paths.referrer_link(self.repository, manifest.subject.digest, manifest.digest)]
                if manifest.subject is not None
                else []
            ),
        ):
            try:
                await self.driver.delete(path)
            except PathNotFoundError:
                pass
        await self.cache.forget(self.repository, REVISION, manifest.digest)
        first, *rest = (
            MANIFEST_BLOB_UNKNOWN(f"{digest}: garbage collection is deleting it; push it again")
            for digest in threatened
        )
        raise RegistryError(first.error_code, first.detail, also=rest)

    async def delete(self, digest: Digest) -> Manifest:
        """
        Remove a manifest from the repository (its bytes stay until garbage
        collection), with its referrers entry.

        @raise RegistryError: MANIFEST_UNKNOWN when it is not there.
        """
        manifest = await self.get(digest)
        try:
            await self.driver.delete(paths.manifest_revision(self.repository, digest))
        except PathNotFoundError:
            raise MANIFEST_UNKNOWN(f"unknown manifest {digest}") from None
        finally:
            # After the revision is gone: a lookup meanwhile cannot set it again.
            await self.cache.forget(self.repository, REVISION, digest)
        if manifest.subject is not None:
            try:
                await self.driver.delete(
                    paths.referrer_link(self.repository, manifest.subject.digest, digest)
                )
            except PathNotFoundError:
                pass
        return manifest

    async def referrers(self, subject: Digest) -> list[Manifest]:
        """
        The manifests of this repository whose subject is C{subject}, in
        digest order; none for an unknown subject.  The revisions and the
        manifests' bytes are read in two batches
        (L{txregistry.interfaces.IBatchReader}): a subject with a thousand
        referrers (signatures, attestations) costs two trips to storage,
        not two thousand.
        """
        try:
            algorithms = await self.driver.list(paths.referrers(self.repository, subject))
        except PathNotFoundError:
            return []
        digests: list[Digest] = []
        for algorithm_path in algorithms:
            try:
                entries = await self.driver.list(algorithm_path)
            except PathNotFoundError:
                continue
            algorithm = algorithm_path.rsplit("/", 1)[1]
            for entry in entries:
                try:
                    digests.append(Digest.parse(f"{algorithm}:{entry.rsplit('/', 1)[1]}"))
                except RegistryError:
                    continue  # not ours to list
        found = [
            manifest
            for manifest in await self._many(digests)
            if manifest.subject is not None and manifest.subject.digest == subject
        ]
        return sorted(found, key=lambda manifest: str(manifest.digest))

    async def _many(self, digests: list[Digest]) -> list[Manifest]:
        """
        Those of C{digests} that are manifests of this repository, as L{get}
        finds them (one deleted meanwhile is left out), in two batches.  The
        cache is neither asked nor told: asking it a thousand times costs
        more than the batch read of the revisions (a thousand awaits on the
        reactor thread, or a thousand round trips to Redis), and telling it
        what a batch read could race a delete's forget (the cache would then
        vouch for a deleted manifest: test_concurrent_pushes_and_deletes).
        """
        revisions = {
            paths.manifest_revision_link(self.repository, digest): digest for digest in digests
        }
        stored = await get_contents(self.driver, list(revisions))
        gone = {revisions[path] for path in revisions.keys() - stored.keys()}
        present = [digest for digest in digests if digest not in gone]
        manifests = {digest: self.parsed.get(digest) for digest in present}
        missing = [digest for digest, manifest in manifests.items() if manifest is None]
        contents = await get_contents(self.driver, [paths.blob_data(d) for d in missing])
        for digest in missing:
            content = contents.get(paths.blob_data(digest))
            if content is None:
                continue  # no bytes: as get, not listed
            try:
                manifest = dataclasses.replace(parse_manifest(content), digest=digest)
            except RegistryError:
                continue
            self.parsed.put(manifest)
            manifests[digest] = manifest
        return [manifest for manifest in manifests.values() if manifest is not None]


def _referenced(manifest: Manifest) -> list[Descriptor]:
    """The content a manifest needs stored: its config and layers, or its manifests."""
    if manifest.is_index:
        return list(manifest.manifests)
    config = [manifest.config] if manifest.config is not None else []
    return [*config, *(layer for layer in manifest.layers if not layer.urls)]


class TagStore:
    """The tags of one repository."""

    def __init__(self, driver: IStorageDriver, repository: str) -> None:
        self.driver = driver
        self.repository = repository

    async def get(self, tag: str) -> Digest:
        """
        The digest a tag points at.

        @raise RegistryError: MANIFEST_UNKNOWN for an unknown tag.
        """
        try:
            link = await self.driver.get_content(paths.tag_current_link(self.repository, tag))
            return Digest.parse(link.decode("ascii", "replace").strip())
        except (PathNotFoundError, RegistryError):
            raise MANIFEST_UNKNOWN(f"unknown tag {tag}") from None

    async def tag(self, tag: str, digest: Digest) -> None:
        """
        Point C{tag} at C{digest}: its current link first, then its history,
        so that a crash in between leaves a tag that resolves, never a tag
        folder without a current link (listed, yet unknown).
        """
        link = paths.link_content(digest)
        await self.driver.put_content(paths.tag_current_link(self.repository, tag), link)
        await self.driver.put_content(paths.tag_index_link(self.repository, tag, digest), link)

    async def untag(self, tag: str) -> None:
        """
        Remove a tag.

        @raise RegistryError: MANIFEST_UNKNOWN for an unknown tag.
        """
        # The history first: a crash in between leaves the tag whole, as it
        # resolves; the folder's delete is then as short as it can be.
        try:
            await self.driver.delete(f"{paths.tag(self.repository, tag)}/index")
        except PathNotFoundError:
            pass
        try:
            await self.driver.delete(paths.tag(self.repository, tag))
        except PathNotFoundError:
            raise MANIFEST_UNKNOWN(f"unknown tag {tag}") from None

    async def all(self) -> list[str] | None:
        """Every tag, sorted; L{None} when the repository has never had one."""
        try:
            entries = await self.driver.list(paths.tags(self.repository))
        except PathNotFoundError:
            return None
        return sorted(entry.rsplit("/", 1)[1] for entry in entries)

    async def page(self, after: str | None, limit: int | None) -> list[str] | None:
        """
        The tags that sort after C{after}, sorted: the first C{limit} of
        them, read from storage a page at a time
        (L{txregistry.interfaces.IPagedLister.list_page}).  A store that
        holds its whole list in memory may return it all, tags at or before
        C{after} included, for the caller to cut the page from.

        @param after: L{None} (or C{""}) for the first page.
        @param limit: L{None} for every tag.
        @return: L{None} when the repository has never had a tag.
        """
        try:
            return await list_page(self.driver, paths.tags(self.repository), after or None, limit)
        except PathNotFoundError:
            return None

    async def pointing_at(self, digest: Digest) -> list[str]:
        """The tags whose current manifest is C{digest}."""
        found = []
        for tag in await self.all() or []:
            try:
                if await self.get(tag) == digest:
                    found.append(tag)
            except RegistryError:
                continue  # removed meanwhile
        return found
