"""
Content for the garbage collection tests, written through the registry's
domain layer (as a push would leave it) to any storage driver.
"""

from __future__ import annotations

import json
from typing import Any

from txregistry.digest import Digest
from txregistry.drivers.base import exists
from txregistry.interfaces import IStorageDriver
from txregistry.registry import paths
from txregistry.registry.manifest_formats import parse_manifest
from txregistry.registry.repository import Registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class Content:
    """Pushes blobs, images, indexes and artifacts into one registry's storage."""

    def __init__(self, driver: IStorageDriver) -> None:
        self.driver = driver
        self.registry = Registry(driver, delete_enabled=True)
        self.sizes: dict[Digest, int] = {}
        self.media_types: dict[Digest, str] = {}

    async def blob(self, repository: str, data: bytes) -> Digest:
        """Store C{data} as a blob and link it into C{repository}."""
        digest = Digest.of(data)
        await self.driver.put_content(paths.blob_data(digest), data)
        await self.registry.repository(repository).blobs.link(digest)
        self.sizes[digest] = len(data)
        return digest

    def descriptor(self, digest: Digest, media_type: str) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": str(digest), "size": self.sizes[digest]}

    async def image(
        self,
        repository: str,
        name: str,
        tag: str | None = None,
        layers: list[bytes] | None = None,
        subject: Digest | None = None,
        artifact_type: str | None = None,
        reuse: list[Digest] | None = None,
    ) -> Digest:
        """
        An image manifest whose config is unique to C{name} and whose layers
        are C{layers} (one unique to C{name} by default), after the layers
        C{reuse} names, which the repository holds already (a client that
        finds them there does not send them again).
        """
        config = await self.blob(repository, json.dumps({"name": name}).encode())
        digests = list(reuse or []) + [
            await self.blob(repository, layer)
            for layer in (layers if layers is not None else [f"layer of {name}".encode()])
        ]
        document: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": self.descriptor(config, OCI_CONFIG),
            "layers": [self.descriptor(digest, OCI_LAYER) for digest in digests],
        }
        if artifact_type is not None:
            document["artifactType"] = artifact_type
        if subject is not None:
            document["subject"] = self.descriptor(subject, self.media_types[subject])
        return await self.manifest(repository, document, tag)

    async def index(
        self, repository: str, children: list[Digest], tag: str | None = None
    ) -> Digest:
        """An OCI index of C{children}."""
        document = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    **self.descriptor(child, self.media_types[child]),
                    "platform": {"architecture": f"arch{number}", "os": "linux"},
                }
                for number, child in enumerate(children)
            ],
        }
        return await self.manifest(repository, document, tag)

    async def manifest(self, repository: str, document: dict[str, Any], tag: str | None) -> Digest:
        content = json.dumps(document).encode()
        manifest = parse_manifest(content)
        store = self.registry.repository(repository)
        await store.manifests.put(manifest)
        if tag is not None:
            await store.tags.tag(tag, manifest.digest)
        self.sizes[manifest.digest] = len(content)
        self.media_types[manifest.digest] = manifest.media_type
        return manifest.digest

    async def stored(self, digest: Digest) -> bool:
        """Whether the blob's data is stored."""
        return await self._exists(paths.blob_data(digest))

    async def has_manifest(self, repository: str, digest: Digest) -> bool:
        """Whether the manifest is a revision of C{repository}."""
        return await self._exists(paths.manifest_revision_link(repository, digest))

    async def linked(self, repository: str, digest: Digest) -> bool:
        """Whether C{repository} links the blob."""
        return await self._exists(paths.layer_link(repository, digest))

    async def _exists(self, path: str) -> bool:
        return await exists(self.driver, path)

    async def files(self) -> set[str]:
        """Every file in storage."""
        found: set[str] = set()
        from txregistry.drivers.errors import PathNotFoundError

        def visit(info: Any) -> None:
            if not info.is_dir:
                found.add(info.path)

        try:
            await self.driver.walk("/", visit)
        except PathNotFoundError:
            pass
        return found
