"""
Building and pushing manifests for the real-HTTP tests of manifests, tags,
the catalog and referrers: media types, descriptors, and L{Images}, which
pushes blobs and manifests to one repository of a running registry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import support
from support import sha256
from txregistry.registry.manifest_formats import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from txregistry.registry.manifest_formats import DOCKER_MANIFEST_LIST as DOCKER_LIST
from txregistry.testing.manifests import OCI_CONFIG, OCI_LAYER

SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_FOREIGN_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
EMPTY_CONFIG_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

# Every manifest type this registry stores, as a client that takes them all asks.
ACCEPT_ALL = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])


def sha512(data: bytes) -> str:
    """The sha512 digest string of C{data}."""
    return "sha512:" + hashlib.sha512(data).hexdigest()


def encode(document: Any) -> bytes:
    """A JSON document as compact bytes."""
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def descriptor(media_type: str, content: bytes, **extra: Any) -> dict[str, Any]:
    """The descriptor of C{content}."""
    return {"mediaType": media_type, "digest": sha256(content), "size": len(content), **extra}


def assert_error(response: Any, status: int, *codes: str) -> None:
    """
    An OCI error response of C{status} with exactly C{codes}, in order, and
    its whole body (no C{HEAD}).
    """
    support.assert_error(response, status, *codes)
    assert int(response.header("Content-Length")) == len(response.body)


def error_details(response: Any) -> list[Any]:
    """The C{detail} of each error of an OCI error response."""
    return [error.get("detail") for error in response.json()["errors"]]


def link_header(path: str) -> str:
    """The RFC 5988 C{Link} header value for the next page at C{path}."""
    return f'<{path}>; rel="next"'


class Images:
    """
    Pushes blobs and manifests to one repository of a running registry
    (a L{conftest.Registry}).
    """

    def __init__(self, registry: Any, repo: str) -> None:
        self.registry = registry
        self.repo = repo

    # -- blobs -------------------------------------------------------------------

    def blob(self, media_type: str, data: bytes | None = None, **extra: Any) -> dict[str, Any]:
        """Push C{data} (random bytes by default); its descriptor."""
        data = os.urandom(64) if data is None else data
        self.registry.push(self.repo, data)
        return descriptor(media_type, data, **extra)

    # -- building manifests ------------------------------------------------------

    def image(
        self,
        media_type: str = OCI_MANIFEST,
        *,
        layers: int = 1,
        declare: bool = True,
        **fields: Any,
    ) -> bytes:
        """
        Push a config and C{layers} layers; an image manifest of them.

        @param declare: whether the manifest names its C{mediaType}.
        @param fields: more top-level fields (C{subject}, C{annotations}...).
        """
        docker = media_type == DOCKER_MANIFEST
        config = self.blob(DOCKER_CONFIG if docker else OCI_CONFIG)
        layer_type = DOCKER_LAYER if docker else OCI_LAYER
        document: dict[str, Any] = {"schemaVersion": 2}
        if declare:
            document["mediaType"] = media_type
        document["config"] = config
        document["layers"] = [self.blob(layer_type) for _ in range(layers)]
        document.update(fields)
        return encode(document)

    def artifact(
        self,
        artifact_type: str | None = "application/vnd.example.sbom",
        *,
        subject: bytes | None = None,
        subject_type: str = OCI_MANIFEST,
        config_type: str = EMPTY_TYPE,
        annotations: dict[str, str] | None = None,
    ) -> bytes:
        """
        An OCI 1.1 artifact manifest: the empty config (pushed), one blob
        layer, and optionally a subject (which need not be pushed).
        """
        self.registry.push(self.repo, EMPTY_CONFIG)
        document: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
        if artifact_type is not None:
            document["artifactType"] = artifact_type
        config = EMPTY_CONFIG if config_type == EMPTY_TYPE else os.urandom(16)
        if config_type != EMPTY_TYPE:
            self.registry.push(self.repo, config)
        document["config"] = descriptor(config_type, config)
        document["layers"] = [self.blob("application/vnd.example.data")]
        if subject is not None:
            document["subject"] = descriptor(subject_type, subject)
        if annotations is not None:
            document["annotations"] = annotations
        return encode(document)

    def index(
        self,
        children: list[tuple[bytes, dict[str, Any] | None]],
        media_type: str = OCI_INDEX,
        *,
        declare: bool = True,
        child_type: str | None = None,
        **fields: Any,
    ) -> bytes:
        """An index of C{children}, each (manifest bytes, platform or L{None})."""
        entries = []
        for content, platform in children:
            kind = child_type or json.loads(content).get("mediaType", OCI_MANIFEST)
            entry = descriptor(kind, content)
            if platform is not None:
                entry["platform"] = platform
            entries.append(entry)
        document: dict[str, Any] = {"schemaVersion": 2}
        if declare:
            document["mediaType"] = media_type
        document["manifests"] = entries
        document.update(fields)
        return encode(document)

    # -- requests ------------------------------------------------------------------

    def put(
        self,
        reference: str,
        content: bytes,
        content_type: str | None = None,
        repo: str | None = None,
    ) -> Any:
        """
        C{PUT} a manifest, as C{content_type} (by default the document's own
        C{mediaType}; C{""} sends no C{Content-Type}).
        """
        if content_type is None:
            try:
                content_type = json.loads(content).get("mediaType") or OCI_MANIFEST
            except (ValueError, AttributeError):
                content_type = OCI_MANIFEST
        headers = {"Content-Type": content_type} if content_type else {}
        return self.registry.request(
            "PUT", f"{repo or self.repo}/manifests/{reference}", content, headers
        )

    def push(self, reference: str, content: bytes, content_type: str | None = None) -> str:
        """C{PUT} a manifest that must be stored; its digest."""
        response = self.put(reference, content, content_type)
        assert response.status == 201, response.body
        digest = response.header("Docker-Content-Digest")
        assert digest is not None
        return digest

    def get(
        self,
        reference: str,
        accept: str | None = ACCEPT_ALL,
        method: str = "GET",
        repo: str | None = None,
        **headers: str,
    ) -> Any:
        """
        C{GET} (or C{HEAD}) a manifest, accepting C{accept}; more headers
        as keywords, C{If_None_Match} for C{If-None-Match}.
        """
        send = {name.replace("_", "-"): value for name, value in headers.items()}
        if accept is not None:
            send["Accept"] = accept
        return self.registry.request(
            method, f"{repo or self.repo}/manifests/{reference}", None, send
        )

    def delete(self, reference: str) -> Any:
        """C{DELETE} a manifest by tag or digest."""
        return self.registry.request("DELETE", f"{self.repo}/manifests/{reference}")

    def tags(self, query: str = "") -> Any:
        """C{GET} the tag list."""
        return self.registry.request("GET", f"{self.repo}/tags/list{query}")

    def referrers(self, subject: str, query: str = "", method: str = "GET") -> Any:
        """C{GET} the referrers of C{subject}."""
        return self.registry.request(method, f"{self.repo}/referrers/{subject}{query}")

    # -- the storage root ----------------------------------------------------------

    def revision_link(self, digest: str, repo: str | None = None) -> Path:
        """The link that makes a manifest part of the repository."""
        algorithm, hex_part = digest.split(":", 1)
        return (
            self.registry.v2_root
            / "repositories"
            / (repo or self.repo)
            / "_manifests"
            / "revisions"
            / algorithm
            / hex_part
            / "link"
        )

    def tags_dir(self) -> Path:
        """The folder of the repository's tags."""
        return self.registry.v2_root / "repositories" / self.repo / "_manifests" / "tags"
