"""
Image manifests for tests, scripts and benchmarks that push over raw HTTP:
the document of an OCI image made of blobs already pushed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from txregistry.registry.manifest_formats import OCI_MANIFEST

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def oci_image(
    config: tuple[str, int],
    layers: Sequence[tuple[str, int]],
    layer_type: str = OCI_LAYER,
    **fields: Any,
) -> dict[str, Any]:
    """
    An OCI image manifest's document: C{config} and each of C{layers} a
    (digest, size) pair, the layers of C{layer_type}; C{fields} are more
    top-level fields (C{annotations}).
    """
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config[0], "size": config[1]},
        "layers": [
            {"mediaType": layer_type, "digest": digest, "size": size} for digest, size in layers
        ],
        **fields,
    }
