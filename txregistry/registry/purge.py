# -*- test-case-name: tests.test_purge -*-
"""
Upload purging, as Distribution's C{storage.maintenance.uploadpurging}
(C{registry/storage/purgeuploads.go}): uploads started longer ago than the
configured age and never finished are removed from every repository's
C{_uploads}, and, on storage that keeps unfinished multipart uploads of its
own (S3), those older than the age are aborted too.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from txregistry.drivers.errors import PathNotFoundError
from txregistry.interfaces import FileInfo, IStaleWritesPurger, IStorageDriver
from txregistry.registry import paths
from txregistry.registry.parallel import DEFAULT_PARALLELISM, map_bounded


@dataclass
class PurgeResult:
    """What a purge found and removed (or, dry, would remove)."""

    uploads: list[str] = field(default_factory=list)
    multipart_uploads: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self, dry_run: bool) -> str:
        """One line for the log."""
        verb = "would be purged" if dry_run else "purged"
        text = f"{len(self.uploads)} stale uploads {verb}"
        if self.multipart_uploads:
            text += f", {self.multipart_uploads} unfinished multipart uploads aborted"
        if self.errors:
            text += f"; {len(self.errors)} errors: {'; '.join(self.errors[:3])}"
        return text


def parse_started_at(text: str) -> float | None:
    """
    The time in an upload's C{startedat} file (RFC 3339 in UTC, as
    Distribution and txregistry write it, with up to nine digits of
    fraction, as Go writes them), in epoch seconds; L{None} when it does
    not parse.
    """
    text = text.strip()
    if not text.endswith("Z"):
        return None
    whole, dot, fraction = text[:-1].partition(".")
    if dot and not (fraction.isdigit() and fraction.isascii()):
        return None
    try:
        seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
    return seconds + (float("0." + fraction) if dot else 0.0)


def innermost_driver(driver: IStorageDriver) -> Any:
    """The driver below the validating wrapper and any storage middleware."""
    seen = driver
    while hasattr(seen, "driver"):
        seen = seen.driver
    return seen


async def purge_uploads(
    driver: IStorageDriver,
    age: float,
    dry_run: bool = False,
    clock: Callable[[], float] = time.time,
    limit: int = DEFAULT_PARALLELISM,
) -> PurgeResult:
    """
    Remove every upload of every repository started more than C{age}
    seconds ago.  An upload whose C{startedat} cannot be read is judged by
    the newest file in its folder.
    """
    result = PurgeResult()
    cutoff = clock() - age
    # upload folder -> [started at, newest file time]
    found: dict[str, list[float | None]] = {}
    started_files: list[str] = []
    prefix = paths.REPOSITORIES + "/"

    def visit(info: FileInfo) -> bool:
        parts = info.path[len(prefix) :].split("/")
        if "_uploads" not in parts:
            # _layers and _manifests hold no uploads.
            return info.is_dir and parts[-1] not in ("_layers", "_manifests")
        index = parts.index("_uploads")
        if len(parts) <= index + 1:
            return True
        folder = prefix + "/".join(parts[: index + 2])
        entry = found.setdefault(folder, [None, 0.0])
        if not info.is_dir:
            entry[1] = max(entry[1] or 0.0, info.modified)
            if len(parts) == index + 3 and parts[-1] == "startedat":
                started_files.append(info.path)
        return True

    try:
        await driver.walk(paths.REPOSITORIES, visit)
    except PathNotFoundError:
        pass

    async def read_started(path: str) -> None:
        try:
            started = parse_started_at((await driver.get_content(path)).decode("ascii", "replace"))
        except PathNotFoundError:
            return  # finished meanwhile
        found[path.rsplit("/", 1)[0]][0] = started

    await map_bounded(read_started, started_files, limit)
    stale = [
        folder
        for folder, (started, newest) in sorted(found.items())
        if (started if started is not None else newest or 0.0) < cutoff
    ]

    async def remove(folder: str) -> None:
        if not dry_run:
            try:
                await driver.delete(folder)
            except PathNotFoundError:
                return
            except Exception as error:
                result.errors.append(f"{folder}: {error}")
                return
        result.uploads.append(folder)

    await map_bounded(remove, stale, limit)
    inner = innermost_driver(driver)
    if IStaleWritesPurger.providedBy(inner):
        if dry_run:
            return result
        result.multipart_uploads = await inner.purge_stale_writes(cutoff)
    return result


def scheduled_purge(
    driver: IStorageDriver, age: float, dry_run: bool
) -> Callable[[], Awaitable[str]]:
    """
    The job of C{storage.maintenance.uploadpurging}: one purge; says what it
    did.  Processes sharing the storage need not take turns, as in
    Distribution: a purge only deletes what is stale, and two deleting the
    same upload is harmless.
    """

    async def purge() -> str:
        result = await purge_uploads(driver, age, dry_run)
        return result.summary(dry_run)

    return purge
