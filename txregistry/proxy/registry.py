# -*- test-case-name: tests.test_proxy -*-
"""
The registry of a pull-through cache: repositories whose manifests and
blobs come from an upstream registry the first time they are pulled, and
from storage afterwards.

As Distribution's proxy:
  - a tag is looked up upstream with a C{HEAD} on every pull (which Docker
    Hub does not count as a pull); when upstream is unreachable, refuses,
    or does not answer within C{proxy.checktimeout}, the cached tag
    answers, so an outage does not stop pulls;
  - a manifest or blob by digest is served from storage once cached;
  - cached content expires after the remote's C{ttl} (see
    L{txregistry.proxy.expiry}).
Beyond Distribution: several upstreams, chosen by repository prefix
(C{proxy.remotes}); a blob's download is shared by every client that asks
for it meanwhile and streamed to them while it is stored (see
L{txregistry.proxy.fetch}); a blob another repository cached is linked
after upstream confirms this repository has it, not downloaded again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txregistry.cache import LAYER
from txregistry.config.proxy import ProxyConfig, Remote
from txregistry.digest import Digest
from txregistry.errors import BLOB_UNKNOWN, MANIFEST_UNKNOWN, UNAVAILABLE, RegistryError
from txregistry.interfaces import IStorageDriver
from txregistry.outcome import Outcome
from txregistry.proxy.expiry import ExpiryScheduler, expire_content
from txregistry.proxy.fetch import BlobFetch
from txregistry.proxy.upstream import UpstreamError, UpstreamNotFound, UpstreamRegistry
from txregistry.registry.blobs import BlobDescriptor
from txregistry.registry.manifest_formats import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    parse_manifest,
)
from txregistry.registry.manifests import ManifestStore, TagStore
from txregistry.registry.repository import Registry, Repository

# What the cache asks upstream for: every format it stores; a client's own
# Accept is honoured when the cache answers it.
ACCEPTED = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)

BLOB, MANIFEST = "blob", "manifest"

_log = Logger()


def _upstream_failure(remote: Remote, error: UpstreamError) -> RegistryError:
    """What a client is told when upstream failed and the cache has nothing."""
    return UNAVAILABLE(f"upstream {remote.url}: {error}")


class _Upstream:
    """One remote, with its client and the repository's name there."""

    def __init__(self, remote: Remote, client: UpstreamRegistry, name: str) -> None:
        self.remote = remote
        self.client = client
        self.name = name


class ProxiedManifests(ManifestStore):
    """A repository's manifests: cached ones, else upstream's, then cached."""

    upstream: _Upstream
    registry: ProxyRegistry

    async def get(self, digest: Digest) -> Manifest:
        """
        The manifest, fetched from upstream and cached when not cached.

        @raise RegistryError: MANIFEST_UNKNOWN when upstream does not have
            it, UNAVAILABLE when upstream cannot say.
        """
        try:
            return await super().get(digest)
        except RegistryError as error:
            if error.error_code is not MANIFEST_UNKNOWN:
                raise
        upstream = self.upstream
        try:
            content, media_type, _ = await upstream.client.get_manifest(
                upstream.name, str(digest), ACCEPTED
            )
        except UpstreamNotFound:
            raise MANIFEST_UNKNOWN(f"unknown manifest {digest}") from None
        except UpstreamError as error:
            raise _upstream_failure(upstream.remote, error) from None
        return await self.cache_manifest(content, media_type, digest)

    async def cache_manifest(self, content: bytes, media_type: str, digest: Digest) -> Manifest:
        """Store a manifest upstream sent (its digest checked) and schedule its expiry."""
        content_type = media_type.split(";", 1)[0].strip().lower() or None
        manifest = dataclasses.replace(parse_manifest(content, content_type), digest=digest)
        await self.store(manifest)
        self.registry.expire_later(self.repository, digest, MANIFEST, self.upstream.remote)
        return manifest


class ProxiedTags(TagStore):
    """A repository's tags: upstream's when it answers, else the cached ones."""

    upstream: _Upstream
    manifests: ProxiedManifests
    check_timeout: float

    async def get(self, tag: str) -> Digest:
        """
        What the tag points at upstream, its manifest cached and the tag
        recorded; what it pointed at when last seen, when upstream fails.

        @raise RegistryError: MANIFEST_UNKNOWN when neither knows the tag.
        """
        try:
            digest = await self._upstream_digest(tag)
        except UpstreamError as error:
            _log.info(
                "upstream failed on tag {repository}:{tag}, answering from the cache: {error}",
                repository=self.repository,
                tag=tag,
                error=error,
            )
            return await super().get(tag)
        except RegistryError as error:
            # Upstream's manifest is not valid here: the cache's, if any.
            _log.warn(
                "upstream's manifest for {repository}:{tag} not cached: {error}",
                repository=self.repository,
                tag=tag,
                error=error.detail,
            )
            return await super().get(tag)
        if digest is None:
            # As Distribution: a tag upstream no longer has is served while cached.
            return await super().get(tag)
        try:
            current = await super().get(tag)
        except RegistryError:
            current = None
        if current != digest:
            await self.tag(tag, digest)
        return digest

    async def all(self) -> list[str] | None:
        """
        Upstream's tags, as Distribution's proxy lists them; the cached
        ones when upstream fails.
        """
        upstream = self.upstream
        try:
            tags = await upstream.client.list_tags(upstream.name)
        except UpstreamError as error:
            _log.info(
                "upstream failed listing {repository}'s tags, answering from the cache: {error}",
                repository=self.repository,
                error=error,
            )
            return await super().all()
        return tags if tags is not None else await super().all()

    async def page(self, after: str | None, limit: int | None) -> list[str] | None:
        """
        L{all}, whole: upstream's list is paged in memory, as Distribution's
        proxy pages it (the caller cuts the page from it).
        """
        return await self.all()

    async def _upstream_digest(self, tag: str) -> Digest | None:
        """The tag's digest upstream (its manifest cached), or L{None} on a 404."""
        upstream = self.upstream
        head = await upstream.client.head_manifest(
            upstream.name, tag, ACCEPTED, timeout=self.check_timeout
        )
        if head is None:
            return None
        digest: Digest | None = None
        if head.digest is not None:
            try:
                digest = Digest.parse(head.digest)
            except RegistryError:
                digest = None
        if digest is not None and await self.manifests.exists(digest):
            return digest
        content, media_type, given = await upstream.client.get_manifest(
            upstream.name, tag, ACCEPTED
        )
        digest = Digest.parse(given)
        await self.manifests.cache_manifest(content, media_type, digest)
        return digest


class ProxiedRepository(Repository):
    """A repository of the cache: its content comes from C{upstream}."""

    manifest_store = ProxiedManifests
    tag_store = ProxiedTags
    manifests: ProxiedManifests
    tags: ProxiedTags

    def __init__(self, registry: ProxyRegistry, name: str, upstream: _Upstream) -> None:
        super().__init__(registry, name)
        self.registry = registry
        self.upstream = upstream
        self.manifests.upstream, self.manifests.registry = upstream, registry
        self.tags.upstream, self.tags.manifests = upstream, self.manifests
        self.tags.check_timeout = registry.proxy.check_timeout

    async def cached(self, digest: Digest) -> BlobDescriptor | None:
        """The blob, when linked here and its data is stored."""
        try:
            descriptor = await self.blobs.stat(digest)
            await self.blobs.blobs.stat(digest)
        except RegistryError as error:
            if error.error_code is not BLOB_UNKNOWN:
                raise
            # A link may outlive its data (expired through another
            # repository): forget what the cache says of it.
            await self.blobs.cache.forget(self.name, LAYER, digest)
            return None
        return descriptor

    async def blob_size(self, digest: Digest) -> int | None:
        """
        The blob's size, from the cache or upstream (for a C{HEAD}); L{None}
        when upstream has it but does not say its size.

        @raise RegistryError: BLOB_UNKNOWN, or UNAVAILABLE when upstream fails.
        """
        descriptor = await self.cached(digest)
        if descriptor is not None:
            return descriptor.size
        try:
            return await self.upstream.client.head_blob(self.upstream.name, str(digest))
        except UpstreamNotFound:
            raise BLOB_UNKNOWN(str(digest)) from None
        except UpstreamError as error:
            raise _upstream_failure(self.upstream.remote, error) from None

    async def blob(self, digest: Digest) -> BlobDescriptor | BlobFetch:
        """
        The blob, cached (its descriptor), or its download under way (one
        per blob, shared by every client meanwhile).

        @raise RegistryError: BLOB_UNKNOWN when upstream does not have it,
            UNAVAILABLE when upstream fails.
        """
        descriptor = await self.cached(digest)
        if descriptor is not None:
            return descriptor
        try:
            stored = await self.blobs.blobs.stat(digest)
        except RegistryError as error:
            if error.error_code is not BLOB_UNKNOWN:
                raise
            return await self.registry.fetch(self, digest)
        # Another repository cached it: link it once upstream says this
        # repository has it too (no client reaches content through a
        # repository it may not read).
        await self.blob_size(digest)
        await self.blobs.link(digest)
        self.registry.expire_later(self.name, digest, BLOB, self.upstream.remote)
        return stored

    async def start_fetch(self, digest: Digest) -> BlobFetch:
        """Start downloading the blob (see L{ProxyRegistry.fetch})."""
        upstream = self.upstream
        try:
            response = await upstream.client.get_blob(upstream.name, str(digest))
        except UpstreamNotFound:
            raise BLOB_UNKNOWN(str(digest)) from None
        except UpstreamError as error:
            raise _upstream_failure(upstream.remote, error) from None
        fetch = BlobFetch(
            self,
            digest,
            response,
            self.registry.clock,
            on_stored=lambda descriptor: self.registry.expire_later(
                self.name, digest, BLOB, upstream.remote
            ),
        )
        await fetch.start()
        return fetch


class ProxyRegistry(Registry):
    """
    A registry whose repositories cache upstream registries (C{proxy}).

    @ivar proxy: the configuration.
    @ivar expiry: the schedule of the cached content's expiry.
    """

    pull_through = True

    def __init__(
        self,
        driver: IStorageDriver,
        proxy: ProxyConfig,
        clock: IReactorTime,
        client_factory: Callable[[Remote], UpstreamRegistry] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(driver, **options)
        self.proxy = proxy
        self.clock = clock
        self.expiry: ExpiryScheduler | None = None
        self._client_factory = client_factory or (
            lambda remote: UpstreamRegistry(
                remote.url, remote.username, remote.password, reactor=clock
            )
        )
        self._clients: dict[str, UpstreamRegistry] = {}
        self._fetches: dict[tuple[str, str, Digest], Outcome[BlobFetch]] = {}

    def repository(self, name: str) -> Repository:
        """
        The repository called C{name}: cached from the remote serving it;
        a repository no remote serves holds nothing.
        """
        found = self.proxy.remote_for(name)
        if found is None:
            return Repository(self, name)
        remote, upstream_name = found
        client = self._clients.get(remote.prefix)
        if client is None:
            client = self._clients[remote.prefix] = self._client_factory(remote)
        return ProxiedRepository(self, name, _Upstream(remote, client, upstream_name))

    def expire_later(self, repository: str, digest: Digest, kind: str, remote: Remote) -> None:
        """Schedule cached content's expiry, after the remote's C{ttl}."""
        if self.expiry is None or remote.ttl is None:
            return
        try:
            self.expiry.add(repository, digest, kind, remote.ttl)
        except (RuntimeError, ValueError) as error:
            # Stopping, or a ttl past year 9999: the content stays cached.
            _log.warn(
                "{repository}@{digest} not scheduled to expire: {error}",
                repository=repository,
                digest=digest,
                error=error,
            )

    async def fetch(self, repository: ProxiedRepository, digest: Digest) -> BlobFetch:
        """
        The blob's download into C{repository}: the one under way, or a new
        one.  A caller that cancels its wait cancels nothing for others.
        """
        upstream = repository.upstream
        key = (upstream.remote.url, upstream.name, digest)
        outcome = self._fetches.get(key)
        if outcome is None:
            ended = []

            def over(result: Any) -> None:
                ended.append(True)
                self._fetches.pop(key, None)

            def running(fetch: BlobFetch) -> BlobFetch:
                fetch.result().addBoth(over)
                return fetch

            def failed(failure: Failure) -> Failure:
                over(failure)
                return failure

            started: Deferred[BlobFetch] = ensureDeferred(repository.start_fetch(digest))
            started.addCallbacks(running, failed)
            outcome = Outcome(started)
            if not ended:
                self._fetches[key] = outcome
        return await outcome.wait()

    async def start(self) -> None:
        """Read the expiry schedule and start expiring what is due."""
        if not any(remote.ttl is not None for remote in self.proxy.remotes):
            return
        expiry = ExpiryScheduler(self.driver, self.clock, lambda entry: expire_content(self, entry))
        # Content cached while the stored schedule is read is scheduled too.
        self.expiry = expiry
        await expiry.start()

    async def stop(self) -> None:
        """Save the expiry schedule and close the upstream clients' connections."""
        expiry, self.expiry = self.expiry, None
        if expiry is not None:
            await expiry.stop()
        clients, self._clients = list(self._clients.values()), {}
        await DeferredList([client.close() for client in clients])
