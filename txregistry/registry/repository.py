# -*- test-case-name: tests.test_api_blobs -*-
"""
The registry's entry point to its domain: repositories by name, over one
storage driver.
"""

from __future__ import annotations

from txregistry.cache.inmemory import NoCache
from txregistry.interfaces import ICache, IStorageDriver
from txregistry.registry import catalog
from txregistry.registry.blobs import BlobStore, LinkedBlobStore
from txregistry.registry.manifests import ManifestStore, ParsedManifests, TagStore, URLPolicy
from txregistry.registry.uploads import HashStates, Uploads, UploadTotals

# How many repositories L{Registry.repository} keeps for the next request.
_REMEMBERED_REPOSITORIES = 256


class Repository:
    """
    One repository: its blobs, uploads in progress, manifests and tags.

    @cvar manifest_store: the class of its manifests (a pull-through cache's
        repository has its own).
    @cvar tag_store: the class of its tags.
    """

    manifest_store: type[ManifestStore] = ManifestStore
    tag_store: type[TagStore] = TagStore

    def __init__(self, registry: Registry, name: str) -> None:
        self.name = name
        self.blobs = LinkedBlobStore(registry.blobs, name, registry.descriptor_cache)
        self.uploads = Uploads(
            registry.driver, self.blobs, registry.hash_states, registry.upload_totals
        )
        self.manifests = self.manifest_store(
            registry.driver,
            name,
            self.blobs,
            registry.parsed_manifests,
            registry.url_policy,
            registry.descriptor_cache,
        )
        self.tags = self.tag_store(registry.driver, name)


class Registry:
    """
    Every repository stored by one driver.

    @ivar delete_enabled: whether blobs and manifests may be deleted.
    @ivar readonly: whether every write is refused (maintenance mode).
    @ivar url_policy: which foreign layer URLs manifests may carry.
    @ivar descriptor_cache: what is known to exist, per repository.
    @ivar pull_through: whether this is a pull-through cache, which takes no
        pushes nor deletes (see L{txregistry.proxy.registry}).
    """

    pull_through = False

    def __init__(
        self,
        driver: IStorageDriver,
        *,
        delete_enabled: bool = False,
        readonly: bool = False,
        url_policy: URLPolicy | None = None,
        descriptor_cache: ICache | None = None,
    ) -> None:
        self.driver = driver
        self.blobs = BlobStore(driver)
        self.hash_states = HashStates()
        self.upload_totals = UploadTotals()
        self.parsed_manifests = ParsedManifests()
        self.delete_enabled = delete_enabled
        self.readonly = readonly
        self.url_policy = url_policy or URLPolicy.from_config(False, [], [])
        # Not "or": an empty in-memory cache is falsy (it has a length).
        self.descriptor_cache: ICache = (
            descriptor_cache if descriptor_cache is not None else NoCache()
        )
        self._repositories: dict[str, Repository] = {}

    def repository(self, name: str) -> Repository:
        """
        The repository called C{name}, which must be a valid name.  A
        repository holds no state of its own (its stores share the
        registry's), so those asked for lately are kept and handed out
        again: every request asks for one.
        """
        repositories = self._repositories
        repository = repositories.pop(name, None)
        if repository is None:
            repository = Repository(self, name)
            if len(repositories) >= _REMEMBERED_REPOSITORIES:
                del repositories[next(iter(repositories))]
        repositories[name] = repository  # now the most recently used
        return repository

    async def repositories(self) -> list[str]:
        """Every repository holding blobs or manifests, in catalog order."""
        return await catalog.repositories(self.driver)

    async def repositories_page(self, after: str | None, limit: int | None) -> list[str]:
        """
        The repositories sorting after C{after} in catalog order, the first
        C{limit} of them (see L{catalog.repositories_page}).
        """
        return await catalog.repositories_page(self.driver, after, limit)
