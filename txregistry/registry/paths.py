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


def manifest_revision(name: str, digest: Digest) -> str:
    """The folder that makes a manifest part of a repository."""
    return f"{REPOSITORIES}/{name}/_manifests/revisions/{digest.algorithm}/{digest.hex}"


def manifest_revision_link(name: str, digest: Digest) -> str:
    """The link file of a manifest revision."""
    return f"{manifest_revision(name, digest)}/link"


def tags(name: str) -> str:
    """The folder of a repository's tags."""
    return f"{REPOSITORIES}/{name}/_manifests/tags"


def tag(name: str, tag_name: str) -> str:
    """The folder of one tag."""
    return f"{tags(name)}/{tag_name}"


def tag_current_link(name: str, tag_name: str) -> str:
    """The link to the manifest a tag points at now."""
    return f"{tag(name, tag_name)}/current/link"


def tag_index_link(name: str, tag_name: str, digest: Digest) -> str:
    """The record that a tag has pointed at a manifest."""
    return f"{tag(name, tag_name)}/index/{digest.algorithm}/{digest.hex}/link"


def referrers(name: str, subject: Digest) -> str:
    """
    The folder listing the manifests whose subject is C{subject}.  Not part
    of Distribution's layout: an index of our own below C{_manifests}, which
    Distribution's catalog and garbage collection pass over.
    """
    return f"{REPOSITORIES}/{name}/_manifests/referrers/{subject.algorithm}/{subject.hex}"


def referrer_link(name: str, subject: Digest, referrer: Digest) -> str:
    """The record that C{referrer} has C{subject} as its subject."""
    return f"{referrers(name, subject)}/{referrer.algorithm}/{referrer.hex}/link"


# txregistry's own state, beside Distribution's folders, which pass over it.
TXREGISTRY = f"{ROOT}/_txregistry"


def gc_lease() -> str:
    """Who may collect garbage now: one collector at a time per storage."""
    return f"{TXREGISTRY}/gc/lease"


def gc_sweep_notice() -> str:
    """What a collector is about to delete, for pushes to check against."""
    return f"{TXREGISTRY}/gc/sweeping"
