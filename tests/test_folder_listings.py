"""
Sorted listings of big folders (L{txregistry.drivers.folder_listings}):
kept while the folder is unchanged, read again as soon as it changes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from twisted.trial.unittest import TestCase

from support import temporary_directory
from txregistry.drivers import folder_listings, paged_listing
from txregistry.drivers.errors import PathNotFoundError
from txregistry.drivers.filesystem import FilesystemDriver
from txregistry.drivers.folder_listings import SortedListings
from txregistry.drivers.paged_listing import FolderPage, Listing


def make_folder(tmp_path: Path, count: int, settled: bool = True) -> Path:
    folder = tmp_path / "tags"
    folder.mkdir()
    for number in range(count):
        (folder / f"t{number:05d}").mkdir()
    if settled:
        past = time.time() - 60
        os.utime(folder, (past, past))
    return folder


def listing(listings: SortedListings, folder: Path) -> list[str]:
    return listings.sorted_names(str(folder), os.listdir)


def test_kept_while_unchanged(tmp_path: Path) -> None:
    """A big, settled folder is read once, its names sorted."""
    folder = make_folder(tmp_path, 20)
    listings = SortedListings(smallest=10)
    first = listing(listings, folder)
    assert first == sorted(os.listdir(folder))
    assert listing(listings, folder) is first
    assert listings.reads == 1


def test_read_again_once_changed(tmp_path: Path) -> None:
    """An entry added or removed is seen at once."""
    folder = make_folder(tmp_path, 20)
    listings = SortedListings(smallest=10)
    listing(listings, folder)
    (folder / "new").mkdir()
    assert "new" in listing(listings, folder)
    (folder / "new").rmdir()
    assert "new" not in listing(listings, folder)
    assert listings.reads == 3


def test_recently_changed_not_kept(tmp_path: Path) -> None:
    """
    A folder changed within the last seconds is not kept: a change in the
    same tick of the file system's clock would not change its time.
    """
    folder = make_folder(tmp_path, 20, settled=False)
    listings = SortedListings(smallest=10)
    listing(listings, folder)
    listing(listings, folder)
    assert listings.reads == 2


def test_small_not_kept(tmp_path: Path) -> None:
    """A folder below the smallest size kept is read each time."""
    folder = make_folder(tmp_path, 5)
    listings = SortedListings(smallest=10)
    listing(listings, folder)
    listing(listings, folder)
    assert listings.reads == 2


def test_lifetime(tmp_path: Path) -> None:
    """A kept listing is read again after its lifetime, changed or not."""
    folder = make_folder(tmp_path, 20)
    now = [time.time()]
    listings = SortedListings(smallest=10, clock=lambda: now[0])
    listing(listings, folder)
    now[0] += folder_listings.LIFETIME - 1
    listing(listings, folder)
    assert listings.reads == 1
    now[0] += 2
    listing(listings, folder)
    assert listings.reads == 2


def test_least_recently_used_dropped(tmp_path: Path) -> None:
    """At most C{folders} listings are kept."""
    folders = []
    for number in range(3):
        place = tmp_path / str(number)
        place.mkdir()
        folders.append(make_folder(place, 12))
    listings = SortedListings(folders=2, smallest=10)
    for folder in folders:
        listing(listings, folder)
    listing(listings, folders[2])
    listing(listings, folders[1])
    assert listings.reads == 3
    listing(listings, folders[0])
    assert listings.reads == 4


def test_missing(tmp_path: Path) -> None:
    """A missing folder raises FileNotFoundError, kept or not."""
    folder = make_folder(tmp_path, 20)
    listings = SortedListings(smallest=10)
    listing(listings, folder)
    for entry in folder.iterdir():
        entry.rmdir()
    folder.rmdir()
    try:
        listing(listings, folder)
    except FileNotFoundError:
        pass
    else:
        raise AssertionError("no error")


class FilesystemPagesTests(TestCase):
    """The filesystem driver's pages of a big folder, kept sorted."""

    async def test_pages_see_changes(self) -> None:
        root = Path(temporary_directory(self))
        tags = root / "repositories/r/_manifests/tags"
        tags.mkdir(parents=True)
        names = [f"v{number:05d}" for number in range(folder_listings.SMALLEST + 200)]
        for name in names:
            (tags / name).mkdir()
        past = time.time() - 60
        os.utime(tags, (past, past))
        driver = FilesystemDriver(str(root))
        path = "/repositories/r/_manifests/tags"
        walked: list[str] = []
        after = None
        while True:
            page = await driver.list_page(path, after, 100)
            if not page:
                break
            walked += page
            after = page[-1]
        self.assertEqual(walked, names)
        self.assertEqual(driver._listings.reads, 1)
        self.assertEqual(await driver.list_page(path, "v00100", 2), ["v00101", "v00102"])
        (tags / "v00100a").mkdir()
        self.assertEqual(await driver.list_page(path, "v00100", 2), ["v00100a", "v00101"])
        with self.assertRaises(PathNotFoundError):
            await driver.list_page("/repositories/none/_manifests/tags", None, 2)


class SearchBatchTests(TestCase):
    """How many folders the search of marked folders looks into at once."""

    def read_tree(self, read: list[str]) -> Callable[[Listing], FolderPage]:
        """
        A reader of a tree of five organisations of twenty repositories
        each, that records the folders read in C{read}.
        """
        tree: dict[str, list[str]] = {"/r": [f"org{k}" for k in range(5)]}
        for k in range(5):
            tree[f"/r/org{k}"] = [f"app{i:02d}" for i in range(20)]
            for i in range(20):
                tree[f"/r/org{k}/app{i:02d}"] = ["_manifests", "_layers"]

        def read_listing(listing: Listing) -> FolderPage:
            read.append(listing.folder)
            children = tree.get(listing.folder)
            if children is None:
                return paged_listing.EMPTY
            return paged_listing.whole_listing(listing, children, children)

        return read_listing

    def test_one_at_a_time_reads_only_what_the_page_needs(self) -> None:
        """
        Read one listing after another, a first page of three reads the
        top folder, the first organisation and its first three repositories.
        """
        read: list[str] = []
        search = paged_listing.search("/r", {"_manifests"}, None, 3, at_once=1)
        found = paged_listing.run(search, self.read_tree(read))
        self.assertEqual(found, ["org0/app00", "org0/app01", "org0/app02"])
        self.assertEqual(read, ["/r", "/r/org0", "/r/org0/app00", "/r/org0/app01", "/r/org0/app02"])

    def test_batches_look_ahead(self) -> None:
        """
        For a reader that takes a batch concurrently, the organisations are
        looked into several at once (as many as the page may need): the
        same page, more folders read.
        """
        read: list[str] = []
        search = paged_listing.search("/r", {"_manifests"}, None, 3)
        found = paged_listing.run(search, self.read_tree(read))
        self.assertEqual(found, ["org0/app00", "org0/app01", "org0/app02"])
        self.assertEqual(read[:4], ["/r", "/r/org0", "/r/org1", "/r/org2"])
        self.assertEqual(len(read), 4 + 3)
