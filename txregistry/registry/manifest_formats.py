# -*- test-case-name: tests.test_manifest_formats -*-
"""
The manifest formats a registry stores: OCI image manifests and indexes
(artifacts included) and Docker's schema 2 manifests and manifest lists.
Parsing checks a manifest's own structure; whether what it references is
stored is the manifest store's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

from txregistry.digest import Digest
from txregistry.errors import MANIFEST_INVALID, RegistryError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
SCHEMA1_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = IMAGE_TYPES | INDEX_TYPES

# Layer media types whose descriptors may carry foreign `urls`.
LAYER_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    }
)

MAX_MANIFEST_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True)
class Descriptor:
    """A reference to content, as manifests write them."""

    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    platform: dict[str, Any] | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        """The descriptor as OCI JSON."""
        document: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.artifact_type:
            document["artifactType"] = self.artifact_type
        if self.annotations:
            document["annotations"] = self.annotations
        return document


@dataclass(frozen=True)
class Manifest:
    """
    A parsed manifest: its exact bytes, their digest, and what it references.

    @ivar config: an image manifest's config.
    @ivar layers: an image manifest's layers.
    @ivar manifests: an index's manifests.
    """

    media_type: str
    content: bytes
    digest: Digest
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    declared_artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        """Whether this is an index of manifests."""
        return self.media_type in INDEX_TYPES

    @property
    def artifact_type(self) -> str | None:
        """
        What the referrers API lists as its artifact type: C{artifactType},
        else an image manifest's config media type (OCI 1.1).
        """
        if self.declared_artifact_type:
            return self.declared_artifact_type
        if self.config is not None and not self.is_index:
            return self.config.media_type
        return None

    def descriptor(self) -> Descriptor:
        """This manifest as a referrers-list entry."""
        return Descriptor(
            self.media_type,
            self.digest,
            len(self.content),
            artifact_type=self.artifact_type,
            annotations=self.annotations or None,
        )


def _invalid(detail: str) -> RegistryError:
    return MANIFEST_INVALID(detail)


def _string(document: dict[str, Any], key: str, where: str) -> str | None:
    value = document.get(key)
    if value is not None and not isinstance(value, str):
        raise _invalid(f"{where}{key} must be a string")
    return value


def _annotations(document: dict[str, Any], where: str) -> dict[str, str] | None:
    value = document.get("annotations")
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _invalid(f"{where}annotations must map strings to strings")
    return value


def parse_descriptor(value: Any, where: str) -> Descriptor:
    """
    Parse one descriptor.

    @raise RegistryError: MANIFEST_INVALID naming C{where} when it is not one.
    """
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a descriptor object")
    media_type = _string(value, "mediaType", f"{where}.")
    if not media_type:
        raise _invalid(f"{where}.mediaType is required")
    digest_text = value.get("digest")
    if not isinstance(digest_text, str):
        raise _invalid(f"{where}.digest is required")
    try:
        digest = Digest.parse(digest_text)
    except RegistryError:
        raise _invalid(f"{where}.digest is not a valid digest: {digest_text[:150]!r}") from None
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}.size must be a non-negative integer")
    urls = value.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
        raise _invalid(f"{where}.urls must be a list of strings")
    platform = value.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise _invalid(f"{where}.platform must be an object")
    return Descriptor(
        media_type,
        digest,
        size,
        tuple(urls),
        platform,
        _string(value, "artifactType", f"{where}."),
        _annotations(value, f"{where}."),
    )


def _media_type(content_type: str | None, declared: str | None, document: dict[str, Any]) -> str:
    if content_type in SCHEMA1_TYPES or declared in SCHEMA1_TYPES:
        raise _invalid("Docker schema 1 manifests are not supported; push schema 2 or OCI")
    if content_type in MANIFEST_TYPES:
        if declared is not None and declared != content_type:
            raise _invalid(
                f"mediaType {declared!r} in the manifest does not match Content-Type "
                f"{content_type!r}"
            )
        return content_type
    if declared in MANIFEST_TYPES:
        return declared
    if declared is not None:
        raise _invalid(f"unsupported manifest media type {declared!r}")
    # OCI manifests may omit mediaType; tell them apart by their shape.
    if "manifests" in document:
        return OCI_INDEX
    if "config" in document:
        return OCI_MANIFEST
    raise _invalid(f"unsupported manifest media type {content_type!r}")


def parse_manifest(content: bytes, content_type: str | None = None) -> Manifest:
    """
    Parse and check a manifest's bytes.

    @param content_type: the C{Content-Type} it was pushed with (parameters
        stripped), or L{None} when reading it back from storage.
    @raise RegistryError: MANIFEST_INVALID saying what is wrong.
    """
    if len(content) > MAX_MANIFEST_SIZE:
        raise _invalid(f"manifest is larger than {MAX_MANIFEST_SIZE} bytes")
    try:
        # Strict JSON, as Go reads it: no NaN, no lone surrogate (which the
        # events' encoder refuses), an integer past 64 bits read as a float
        # (so as no size), and nesting bounded rather than a RecursionError.
        document = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise _invalid("manifest is not valid JSON") from None
    if not isinstance(document, dict):
        raise _invalid("manifest must be a JSON object")
    version = document.get("schemaVersion")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _invalid("schemaVersion must be 2")
    if version == 1:
        raise _invalid("Docker schema 1 manifests are not supported; push schema 2 or OCI")
    if version != 2 or isinstance(version, bool):
        raise _invalid("schemaVersion must be 2")
    declared = _string(document, "mediaType", "")
    media_type = _media_type(content_type, declared, document)
    if media_type in (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST) and declared != media_type:
        raise _invalid(f"mediaType must be {media_type!r} in a Docker manifest")
    subject = None
    if document.get("subject") is not None:
        subject = parse_descriptor(document["subject"], "subject")
    common: dict[str, Any] = {
        "media_type": media_type,
        "content": content,
        "digest": Digest.of(content),
        "subject": subject,
        "declared_artifact_type": _string(document, "artifactType", ""),
        "annotations": _annotations(document, "") or {},
    }
    if media_type in INDEX_TYPES:
        entries = document.get("manifests")
        if not isinstance(entries, list):
            raise _invalid("manifests must be a list")
        manifests = tuple(
            parse_descriptor(entry, f"manifests[{index}]") for index, entry in enumerate(entries)
        )
        return Manifest(manifests=manifests, **common)
    if "config" not in document:
        raise _invalid("config is required")
    config = parse_descriptor(document["config"], "config")
    layers_value = document.get("layers")
    if not isinstance(layers_value, list):
        raise _invalid("layers must be a list")
    layers = tuple(
        parse_descriptor(entry, f"layers[{index}]") for index, entry in enumerate(layers_value)
    )
    return Manifest(config=config, layers=layers, **common)


def accepted_media_types(accept_headers: Sequence[str]) -> frozenset[str]:
    """
    The media types named in C{Accept} headers, parameters dropped; those
    of the headers seen lately are remembered (a client sends the same
    ones with every request).
    """
    if sum(len(header) for header in accept_headers) > _REMEMBERED_ACCEPT_LENGTH:
        return _accepted(tuple(accept_headers))
    return _remembered_accepted(tuple(accept_headers))


# The longest Accept headers (all lines together) whose parse is remembered.
_REMEMBERED_ACCEPT_LENGTH = 2048


def _accepted(accept_headers: tuple[str, ...]) -> frozenset[str]:
    accepted: set[str] = set()
    for header in accept_headers:
        for part in header.split(","):
            media_type = part.split(";", 1)[0].strip().lower()
            if media_type:
                accepted.add(media_type)
    return frozenset(accepted)


_remembered_accepted = lru_cache(maxsize=256)(_accepted)
