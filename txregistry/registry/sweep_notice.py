# -*- test-case-name: tests.test_gc -*-
"""
The notice a garbage collector leaves in storage while it sweeps: the blobs
it may delete.  A manifest push reads it after writing its revision, and
fails rather than keep a manifest whose content is about to go.

Why that is enough: the collector writes the notice, then walks every
repository again, rescuing any blob that a revision written or rewritten
since its first walk references, and only then deletes.  A push whose check
found no notice wrote its revision before the notice was written, so the
second walk sees that revision; a push that finds the notice naming one of
its blobs fails.  Either way no manifest is left referencing a deleted blob.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from txregistry.digest import Digest
from txregistry.drivers.errors import PathNotFoundError
from txregistry.errors import RegistryError
from txregistry.interfaces import IStorageDriver
from txregistry.registry import paths


@dataclass(frozen=True)
class SweepNotice:
    """
    A collector's notice.

    @ivar owner: the collector that wrote it.
    @ivar expires: epoch seconds after which it no longer counts (a
        collector that died leaves one behind).
    @ivar blobs: what it may delete.
    """

    owner: str
    expires: float
    blobs: frozenset[Digest]

    def threatens(self, digests: Iterable[Digest]) -> list[Digest]:
        """Which of C{digests} this sweep may delete."""
        return [digest for digest in digests if digest in self.blobs]

    def encode(self) -> bytes:
        """The notice as stored: JSON."""
        return json.dumps(
            {
                "owner": self.owner,
                "expires": self.expires,
                "blobs": sorted(str(digest) for digest in self.blobs),
            }
        ).encode("utf-8")


def decode_notice(content: bytes) -> SweepNotice:
    """
    Parse a stored notice.

    @raise ValueError: when it is not one.
    """
    try:
        document = json.loads(content)
        return SweepNotice(
            str(document["owner"]),
            float(document["expires"]),
            frozenset(Digest.parse(text) for text in document["blobs"]),
        )
    except (KeyError, TypeError, RegistryError) as error:
        raise ValueError(f"not a sweep notice: {error}") from None


async def read_notice(
    driver: IStorageDriver, clock: Callable[[], float] = time.time
) -> SweepNotice | None:
    """
    The notice of a sweep in progress, or L{None}.  One that does not parse
    counts as naming every blob, without expiry: a push fails rather than
    guess, until the next collection replaces the notice.
    """
    try:
        content = await driver.get_content(paths.gc_sweep_notice())
    except PathNotFoundError:
        return None
    try:
        notice = decode_notice(content)
    except ValueError:
        return SweepNotice("unknown", float("inf"), _EVERYTHING)
    return notice if notice.expires > clock() else None


class _Everything(frozenset[Digest]):
    """A set that holds every digest: what an unreadable notice may delete."""

    def __contains__(self, item: object) -> bool:
        return isinstance(item, Digest)


_EVERYTHING = _Everything()


async def write_notice(driver: IStorageDriver, notice: SweepNotice) -> None:
    """Store C{notice}, replacing any other."""
    await driver.put_content(paths.gc_sweep_notice(), notice.encode())


async def clear_notice(driver: IStorageDriver) -> None:
    """Remove the notice, if any."""
    try:
        await driver.delete(paths.gc_sweep_notice())
    except PathNotFoundError:
        pass
