# -*- test-case-name: tests.test_layout -*-
"""
Where things live in storage: Distribution's layout, byte for byte, so a
Distribution root directory or bucket is served unchanged.
"""

from __future__ import annotations

from txregistry.digest import Digest

ROOT = "/docker/registry/v2"
REPOSITORIES = f"{ROOT}/repositories"


def blob_data(digest: Digest) -> str:
    """The blob's content."""
    return f"{ROOT}/blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}/data"


def repository(name: str) -> str:
    """The folder of everything a repository holds."""
    return f"{REPOSITORIES}/{name}"


def layer_link(name: str, digest: Digest) -> str:
    """The link file that makes a blob part of a repository."""
    return f"{REPOSITORIES}/{name}/_layers/{digest.algorithm}/{digest.hex}/link"


def upload(name: str, upload_id: str) -> str:
    """The folder of an upload in progress."""
    return f"{REPOSITORIES}/{name}/_uploads/{upload_id}"


def upload_data(name: str, upload_id: str) -> str:
    """The bytes received so far for an upload."""
    return f"{upload(name, upload_id)}/data"


def upload_started_at(name: str, upload_id: str) -> str:
    """When the upload started, as RFC 3339 text; its presence marks the upload."""
    return f"{upload(name, upload_id)}/startedat"


def link_content(digest: Digest) -> bytes:
    """What a link file holds: the digest, with no newline."""
    return str(digest).encode("ascii")
