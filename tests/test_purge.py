"""
Upload purging (C{storage.maintenance.uploadpurging}) on the in-memory
driver; the s3 driver's abort of stale multipart uploads is tested in
tests/test_drivers_s3.py.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from txregistry.drivers.base import ValidatingDriver, exists
from txregistry.drivers.inmemory import InMemoryDriver
from txregistry.interfaces import IStaleWritesPurger
from txregistry.registry import paths
from txregistry.registry.purge import (
    innermost_driver,
    parse_started_at,
    purge_uploads,
    scheduled_purge,
)
from txregistry.registry.repository import Registry

DAY = 24 * 3600.0


def started(seconds_ago: float) -> bytes:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds_ago)).encode()


class PurgeTests(TestCase):
    def setUp(self) -> None:
        self.driver = ValidatingDriver(InMemoryDriver())
        self.registry = Registry(self.driver)

    async def upload(self, repository: str, seconds_ago: float) -> str:
        """Start an upload with a chunk, as if C{seconds_ago} seconds ago; its folder."""
        session = await self.registry.repository(repository).uploads.start()
        await self.driver.put_content(paths.upload_data(repository, session.upload_id), b"chunk")
        await self.driver.put_content(
            paths.upload_started_at(repository, session.upload_id), started(seconds_ago)
        )
        return paths.upload(repository, session.upload_id)

    async def exists(self, path: str) -> bool:
        return await exists(self.driver, path)

    async def test_stale_purged_fresh_kept(self) -> None:
        stale = await self.upload("a/b", 8 * DAY)
        also_stale = await self.upload("c", 7 * DAY + 60)
        fresh = await self.upload("a/b", DAY)
        result = await purge_uploads(self.driver, 7 * DAY)
        self.assertEqual(sorted(result.uploads), sorted([stale, also_stale]))
        self.assertFalse(await self.exists(stale))
        self.assertFalse(await self.exists(also_stale))
        self.assertTrue(await self.exists(fresh))
        self.assertEqual(result.summary(False), "2 stale uploads purged")

    async def test_dry_run(self) -> None:
        stale = await self.upload("a", 8 * DAY)
        result = await purge_uploads(self.driver, 7 * DAY, dry_run=True)
        self.assertEqual(result.uploads, [stale])
        self.assertTrue(await self.exists(stale))
        self.assertEqual(result.summary(True), "1 stale uploads would be purged")

    async def test_unreadable_started_at(self) -> None:
        """An upload whose startedat does not parse is judged by its newest file."""
        folder = await self.upload("a", 0)
        await self.driver.put_content(folder + "/startedat", b"yesterday-ish")
        result = await purge_uploads(self.driver, 3600)
        self.assertEqual(result.uploads, [])
        result = await purge_uploads(self.driver, 3600, clock=lambda: time.time() + 7200)
        self.assertEqual(result.uploads, [folder])

    async def test_nothing_stored(self) -> None:
        self.assertEqual((await purge_uploads(self.driver, 1)).uploads, [])

    async def test_manifests_and_layers_untouched(self) -> None:
        """Only _uploads is purged; old links elsewhere are not uploads."""
        await self.driver.put_content(paths.tag_current_link("a", "v1"), b"sha256:" + b"0" * 64)
        stale = await self.upload("a", 8 * DAY)
        result = await purge_uploads(self.driver, 7 * DAY, clock=lambda: time.time() + 30 * DAY)
        self.assertEqual(result.uploads, [stale])
        self.assertTrue(await self.exists(paths.tag_current_link("a", "v1")))

    async def test_delete_failure_reported(self) -> None:
        """A folder that cannot be deleted is reported; the others are still purged."""
        first = await self.upload("a", 8 * DAY)
        second = await self.upload("b", 8 * DAY)
        original = self.driver.delete

        def delete(path: str) -> Deferred[None]:
            if path == first:
                raise OSError("disk on fire")
            return original(path)

        self.patch(self.driver, "delete", delete)
        result = await purge_uploads(self.driver, 7 * DAY)
        self.assertEqual(result.uploads, [second])
        self.assertEqual(result.errors, [f"{first}: disk on fire"])
        self.assertIn("1 errors", result.summary(False))

    async def test_stale_writes_of_the_backend(self) -> None:
        """A driver that keeps writes of its own is asked to abort the stale ones."""

        @implementer(IStaleWritesPurger)
        class Purging(InMemoryDriver):
            asked: list[float] = []

            def purge_stale_writes(self, started_before: float) -> Deferred[int]:
                self.asked.append(started_before)
                return succeed(3)

        inner = Purging()
        driver = ValidatingDriver(inner)
        self.assertIs(innermost_driver(driver), inner)
        result = await purge_uploads(driver, 100, clock=lambda: 1000.0)
        self.assertEqual((inner.asked, result.multipart_uploads), ([900.0], 3))
        self.assertIn("3 unfinished multipart uploads aborted", result.summary(False))
        await purge_uploads(driver, 100, dry_run=True, clock=lambda: 1000.0)
        self.assertEqual(inner.asked, [900.0])

    async def test_scheduled_job(self) -> None:
        await self.upload("a", 8 * DAY)
        said = await scheduled_purge(self.driver, 7 * DAY, False)()
        self.assertEqual(said, "1 stale uploads purged")


class StartedAtTests(SynchronousTestCase):
    def test_formats(self) -> None:
        self.assertEqual(parse_started_at("1970-01-02T00:00:00Z"), 86400.0)
        self.assertEqual(parse_started_at("1970-01-02T00:00:00.5Z"), 86400.5)
        # Go's RFC 3339 with nanoseconds, as Distribution writes it.
        found: Any = parse_started_at("1970-01-02T00:00:00.123456789Z")
        self.assertAlmostEqual(found, 86400.123456789)
        for text in ("", "yesterday", "1970-01-02", "1970-01-02T00:00:00.xZ"):
            self.assertIsNone(parse_started_at(text), text)
