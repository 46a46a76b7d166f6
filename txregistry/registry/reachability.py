# -*- test-case-name: tests.test_gc -*-
"""
What garbage collection keeps: which manifests of a repository stay, and
which blobs they hold on to.

Without C{delete_untagged}, every manifest revision stays, as in
Distribution.  With it, a repository keeps the manifests its tags point at,
and with them, transitively, the manifests a kept index lists (Distribution
2.8 deletes those: its issue 3178) and the manifests whose C{subject} is a
kept one (signatures, SBOMs and attestations stay with their image); a
manifest younger than the collection's minimum age is kept too, since its
push may not have tagged it yet.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from txregistry.digest import Digest
from txregistry.errors import RegistryError


class ManifestUnreadable(Exception):
    """A manifest's bytes are not a JSON document: what it references is unknown."""


@dataclass(frozen=True)
class ManifestReferences:
    """
    What one manifest references.

    @ivar blobs: its config and layers (of an image manifest, schema 1
        included), or the manifests it lists (of an index): every digest
        that must stay stored while it does, as Distribution marks them.
    @ivar children: the manifests an index lists.
    @ivar subject: the manifest it refers to (OCI 1.1), if any.
    """

    blobs: tuple[Digest, ...] = ()
    children: tuple[Digest, ...] = ()
    subject: Digest | None = None


def descriptor_digest(value: Any, key: str = "digest") -> Digest | None:
    """The digest a descriptor (a JSON object) names under C{key}; L{None} when none is."""
    if not isinstance(value, dict) or not isinstance(value.get(key), str):
        return None
    try:
        return Digest.parse(value[key])
    except RegistryError:
        return None


def references_of(content: bytes) -> ManifestReferences:
    """
    What the manifest C{content} references.  Read leniently, as stored
    content may predate today's checks (a schema 1 manifest that Distribution
    accepted, say): any JSON object is read for C{config}, C{layers},
    C{manifests}, C{subject} and schema 1's C{fsLayers}.

    @raise ManifestUnreadable: when C{content} is not a JSON object.
    """
    try:
        document = json.loads(content)
    except (UnicodeDecodeError, ValueError):
        raise ManifestUnreadable("not JSON") from None
    if not isinstance(document, dict):
        raise ManifestUnreadable("not a JSON object")

    def listed(key: str, digest_key: str = "digest") -> list[Digest]:
        values = document.get(key)
        if not isinstance(values, list):
            return []
        return [d for d in (descriptor_digest(v, digest_key) for v in values) if d is not None]

    children = tuple(listed("manifests"))
    config = descriptor_digest(document.get("config"))
    blobs = (
        ([config] if config is not None else [])
        + listed("layers")
        + listed("fsLayers", "blobSum")
        + list(children)
    )
    return ManifestReferences(
        blobs=tuple(dict.fromkeys(blobs)),
        children=children,
        subject=descriptor_digest(document.get("subject")),
    )


def kept_manifests(
    revisions: Iterable[Digest],
    roots: Iterable[Digest],
    references: Mapping[Digest, ManifestReferences | None],
) -> set[Digest]:
    """
    The manifests of one repository that stay: C{roots} (those of
    C{revisions} that are tagged or young), and transitively the manifests
    a kept index lists and the manifests whose subject is kept.

    @param references: what each revision references; a revision missing
        here, or L{None} here (its bytes are gone), keeps nothing else.
    """
    present = set(revisions)
    by_subject: dict[Digest, list[Digest]] = {}
    for digest in present:
        found = references.get(digest)
        if found is not None and found.subject is not None:
            by_subject.setdefault(found.subject, []).append(digest)
    kept: set[Digest] = set()
    pending = [digest for digest in roots if digest in present]
    while pending:
        digest = pending.pop()
        if digest in kept:
            continue
        kept.add(digest)
        found = references.get(digest)
        if found is not None:
            pending.extend(child for child in found.children if child in present)
        pending.extend(by_subject.get(digest, ()))
    return kept
