# -*- test-case-name: tests.test_gc -*-
"""
What storage holds, read in one pass for garbage collection and checking:
each repository's manifest revisions, tags, tag histories, layer links and
referrers entries, with the modification time of every link, and every blob
of the registry-wide store.  Paths are Distribution's (see
L{txregistry.registry.paths}); anything else found among them is left alone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from txregistry.digest import SUPPORTED_ALGORITHMS, Digest
from txregistry.drivers.base import list_files
from txregistry.drivers.errors import PathNotFoundError
from txregistry.errors import RegistryError
from txregistry.interfaces import FileInfo, IStorageDriver
from txregistry.registry import catalog, paths
from txregistry.registry.parallel import DEFAULT_PARALLELISM, map_bounded

BLOBS = f"{paths.ROOT}/blobs"


# The time of a link known only by its folder's name (see read_layer_names):
# later than any other, so that whoever compares it takes it for new.
UNSEEN = math.inf


@dataclass(frozen=True)
class Link:
    """
    One link file: the digest its path names, the path, and when it was
    last written (storage's clock; 0 where the driver keeps no times;
    L{UNSEEN} where only the name of the link's folder was read).
    """

    digest: Digest
    path: str
    modified: float


@dataclass
class RepositoryInventory:
    """
    What one repository holds.

    @ivar revisions: its manifests, by digest.
    @ivar layers: the blobs linked into it, by digest.
    @ivar tags: the path of each tag's C{current/link} (read by L{read_tags}).
    @ivar current: each tag's manifest, once L{read_tags} has read them; a
        tag whose link does not hold a digest is missing here.
    @ivar tag_history: the C{index} entries of the tags: which tags have
        pointed at a manifest (Distribution's C{tags/<tag>/index}).
    @ivar referrers: the referrers index: (subject, referrer link).
    """

    name: str
    revisions: dict[Digest, Link] = field(default_factory=dict)
    layers: dict[Digest, Link] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    current: dict[str, Digest] = field(default_factory=dict)
    tag_history: dict[Digest, list[Link]] = field(default_factory=dict)
    referrers: list[tuple[Digest, Link]] = field(default_factory=list)

    def tagged(self) -> set[Digest]:
        """The manifests some tag points at now."""
        return set(self.current.values())


_HEX = re.compile(r"[a-f0-9]+", re.ASCII)


def _digest(algorithm: str, hex_part: str) -> Digest | None:
    """
    The digest a path names, or L{None}: what L{Digest.parse} accepts, but
    cheaper, as a walk meets one per link.
    """
    if len(hex_part) != SUPPORTED_ALGORITHMS.get(algorithm) or not _HEX.fullmatch(hex_part):
        return None
    return Digest(algorithm, hex_part)


def _record(inventory: RepositoryInventory, parts: list[str], info: FileInfo) -> None:
    """File the link at C{parts} (the path below the repository) in C{inventory}."""
    match parts:
        case ["_layers", algorithm, hex_part, "link"]:
            digest = _digest(algorithm, hex_part)
            if digest is not None:
                inventory.layers[digest] = Link(digest, info.path, info.modified)
        case ["_manifests", "revisions", algorithm, hex_part, "link"]:
            digest = _digest(algorithm, hex_part)
            if digest is not None:
                inventory.revisions[digest] = Link(digest, info.path, info.modified)
        case ["_manifests", "tags", tag, "current", "link"]:
            # The digest is the link's content, read later.
            inventory.tags[tag] = info.path
        case ["_manifests", "tags", _tag, "index", algorithm, hex_part, "link"]:
            digest = _digest(algorithm, hex_part)
            if digest is not None:
                link = Link(digest, info.path, info.modified)
                inventory.tag_history.setdefault(digest, []).append(link)
        case ["_manifests", "referrers", s_algorithm, s_hex, r_algorithm, r_hex, "link"]:
            subject = _digest(s_algorithm, s_hex)
            referrer = _digest(r_algorithm, r_hex)
            if subject is not None and referrer is not None:
                inventory.referrers.append((subject, Link(referrer, info.path, info.modified)))


# What a repository holds that an inventory reads: everything but uploads.
EVERYTHING = ("_layers", "_manifests")
# What changes when something is pushed: the links to blobs and manifests.
LINKS = ("_layers", "_manifests/revisions")
# The links, and the referrers index.
LINKS_AND_REFERRERS = (*LINKS, "_manifests/referrers")
# The links to manifests alone.
REVISIONS = ("_manifests/revisions",)


async def read_repository(
    driver: IStorageDriver, name: str, folders: Sequence[str] = EVERYTHING
) -> RepositoryInventory:
    """
    The inventory of repository C{name} as far as C{folders} (below the
    repository's) hold it, tags not yet read; uploads in progress are never
    walked.
    """
    inventory = RepositoryInventory(name)
    root = paths.repository(name)
    cut = len(root) + 1
    for child in folders:
        try:
            # Below _layers and _manifests no repository nests, and no
            # upload is kept (they are the purger's, under _uploads).
            files = await list_files(driver, f"{root}/{child}")
        except PathNotFoundError:
            continue
        for info in files:
            _record(inventory, info.path[cut:].split("/"), info)
    return inventory


async def read_layer_names(driver: IStorageDriver, inventory: RepositoryInventory) -> None:
    """
    Fill C{inventory.layers} from the names of the link folders alone, each
    link's time L{UNSEEN}: no link is read or C{stat}-ed, one listing per
    algorithm where a walk reads a folder per blob.  A link written again
    in place, its folder already there, goes unnoticed.
    """
    top = f"{paths.repository(inventory.name)}/_layers"
    try:
        algorithms = await driver.list(top)
    except PathNotFoundError:
        return
    for folder in algorithms:
        algorithm = folder.rsplit("/", 1)[1]
        try:
            children = await driver.list(folder)
        except PathNotFoundError:
            continue  # removed meanwhile
        for child in children:
            digest = _digest(algorithm, child.rsplit("/", 1)[1])
            if digest is not None:
                inventory.layers[digest] = Link(digest, f"{child}/link", UNSEEN)


async def read_tags(
    driver: IStorageDriver, inventory: RepositoryInventory, limit: int = DEFAULT_PARALLELISM
) -> None:
    """Read where each tag of C{inventory} points (L{RepositoryInventory.current})."""

    async def read(tag: str) -> tuple[str, Digest | None]:
        try:
            content = await driver.get_content(inventory.tags[tag])
            return tag, Digest.parse(content.decode("ascii", "replace").strip())
        except (PathNotFoundError, RegistryError):
            return tag, None  # untagged meanwhile, or not a digest

    for tag, digest in await map_bounded(read, sorted(inventory.tags), limit):
        if digest is not None:
            inventory.current[tag] = digest


async def read_repositories(
    driver: IStorageDriver,
    limit: int = DEFAULT_PARALLELISM,
    folders: Sequence[str] = EVERYTHING,
    tags: bool = True,
    layer_names: bool = False,
) -> list[RepositoryInventory]:
    """
    Every repository's inventory as far as C{folders} hold it, in catalog
    order, several walked at once; with C{tags}, where each tag points is
    read too (L{read_tags}); with C{layer_names}, the links to blobs are
    known by name only (L{read_layer_names}).
    """

    async def read(name: str) -> RepositoryInventory:
        inventory = await read_repository(driver, name, folders)
        if layer_names:
            await read_layer_names(driver, inventory)
        if tags:
            await read_tags(driver, inventory, limit)
        return inventory

    return await map_bounded(read, await catalog.repositories(driver), limit)


async def read_blobs(
    driver: IStorageDriver, limit: int = DEFAULT_PARALLELISM
) -> dict[Digest, FileInfo]:
    """
    Every blob of the registry-wide store, with its C{data} file's size and
    time, by digest.  The 256 two-digit folders of each algorithm are
    listed several at once.
    """
    found: dict[Digest, FileInfo] = {}
    cut = len(BLOBS) + 1

    async def list_folder(folder: str) -> None:
        try:
            files = await list_files(driver, folder)
        except PathNotFoundError:
            return  # removed meanwhile
        for info in files:
            parts = info.path[cut:].split("/")
            if len(parts) == 4 and parts[3] == "data":
                digest = _digest(parts[0], parts[2])
                if digest is not None and digest.hex.startswith(parts[1]):
                    found[digest] = info

    try:
        algorithms = await driver.list(BLOBS)
    except PathNotFoundError:
        return found
    folders: list[str] = []
    for algorithm in algorithms:
        try:
            folders.extend(await driver.list(algorithm))
        except PathNotFoundError:
            continue
    await map_bounded(list_folder, folders, limit)
    return found
