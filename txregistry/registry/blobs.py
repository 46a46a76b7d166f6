# -*- test-case-name: tests.test_blobs -*-
"""
Blobs: the content-addressed store shared by all repositories, and each
repository's links into it.
"""

from __future__ import annotations

from dataclasses import dataclass

from txregistry.cache import LAYER
from txregistry.digest import Digest
from txregistry.drivers.errors import PathNotFoundError
from txregistry.errors import BLOB_UNKNOWN, RegistryError
from txregistry.interfaces import ICache, IFileReader, IStorageDriver, PutContent
from txregistry.registry import paths

# The descriptor cache's kind for blobs linked into a repository.


@dataclass(frozen=True)
class BlobDescriptor:
    """What the registry knows of a stored blob."""

    digest: Digest
    size: int
    media_type: str = "application/octet-stream"


class BlobStore:
    """The registry-wide store of verified blobs, addressed by digest."""

    def __init__(self, driver: IStorageDriver) -> None:
        self.driver = driver

    async def stat(self, digest: Digest) -> BlobDescriptor:
        """
        Describe a stored blob.

        @raise txregistry.errors.RegistryError: BLOB_UNKNOWN when absent.
        """
        try:
            info = await self.driver.stat(paths.blob_data(digest))
        except PathNotFoundError:
            raise BLOB_UNKNOWN(str(digest)) from None
        if info.is_dir:
            raise BLOB_UNKNOWN(str(digest))
        return BlobDescriptor(digest, info.size)

    async def open(self, digest: Digest, offset: int = 0) -> IFileReader:
        """
        A reader of the blob's bytes from C{offset}.

        @raise txregistry.errors.RegistryError: BLOB_UNKNOWN when absent.
        """
        try:
            return await self.driver.reader(paths.blob_data(digest), offset)
        except PathNotFoundError:
            raise BLOB_UNKNOWN(str(digest)) from None


class LinkedBlobStore:
    """The blobs one repository links to; only those are served from it."""

    def __init__(self, blobs: BlobStore, repository: str, cache: ICache) -> None:
        self.blobs = blobs
        self.driver = blobs.driver
        self.repository = repository
        self.cache = cache

    async def stat(self, digest: Digest) -> BlobDescriptor:
        """
        Describe a blob linked into this repository.

        @raise txregistry.errors.RegistryError: BLOB_UNKNOWN when it is not
            linked here, or its content is gone.
        """
        size = await self.cache.get(self.repository, LAYER, digest)
        if size is not None:
            return BlobDescriptor(digest, size)
        try:
            linked = await self.driver.get_content(paths.layer_link(self.repository, digest))
        except PathNotFoundError:
            raise BLOB_UNKNOWN(str(digest)) from None
        if linked.strip() != paths.link_content(digest):
            raise BLOB_UNKNOWN(str(digest))
        descriptor = await self.blobs.stat(digest)
        await self.cache.set(self.repository, LAYER, digest, descriptor.size)
        return descriptor

    async def link(self, digest: Digest) -> None:
        """Make a stored blob part of this repository."""
        operation = self.link_operation(digest)
        await self.driver.put_content(operation.path, operation.content)

    def link_operation(self, digest: Digest) -> PutContent:
        """The write that L{link} makes, for a batch of writes that ends with it."""
        return PutContent(paths.layer_link(self.repository, digest), paths.link_content(digest))

    async def unlink(self, digest: Digest) -> None:
        """
        Remove the blob from this repository (its content stays until
        garbage collection).

        @raise txregistry.errors.RegistryError: BLOB_UNKNOWN when not linked.
        """
        try:
            await self.driver.delete(paths.layer_link(self.repository, digest))
        except PathNotFoundError:
            raise BLOB_UNKNOWN(str(digest)) from None
        finally:
            # After the link is gone: a lookup meanwhile cannot set it again.
            await self.cache.forget(self.repository, LAYER, digest)

    async def mount(self, source: LinkedBlobStore, digest: Digest) -> BlobDescriptor | None:
        """
        Link a blob that C{source} holds into this repository.

        @return: the blob, or L{None} when C{source} does not hold it.
        """
        try:
            descriptor = await source.stat(digest)
        except RegistryError as error:
            if error.error_code is BLOB_UNKNOWN:
                return None
            raise
        await self.link(digest)
        return descriptor
