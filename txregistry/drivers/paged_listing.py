# -*- test-case-name: tests.test_drivers -*-
"""
Listings read a page at a time (L{txregistry.interfaces.IPagedLister}): the
cutting of a page from a whole listing, and the search every driver runs to
find a page of marked folders.

The search
==========
Marked folders come in component order: depth first, a folder before what
is below it, siblings in plain string order, so C{a/b} sorts before C{a-b}
(Distribution's C{lessPath}).  The search for the page after C{after} reads
nothing that sorts before it: at each level it enters the folder that
C{after} names there, if any, then the siblings sorting after that one,
never those before; and it stops once it has found C{limit} folders.

The search reads nothing itself: it is a generator that yields the
listings it needs next, a batch at a time, and is sent back their pages, in
the same order.  L{run} answers it with blocking reads (the filesystem
driver, in one trip to its thread); L{run_async} with Deferreds, a batch at
once (object storage, and the fallback over L{IStorageDriver.list}).  Every
driver thus finds the same page, whatever it reads with.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Collection, Generator, Iterable, Sequence
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred, DeferredSemaphore, FirstError, gatherResults

# A name that a driver path may hold (see txregistry.interfaces).  Whole
# paths are checked in txregistry.drivers.base, which imports this module.
_NAME = re.compile(r"[A-Za-z0-9._-]+", re.ASCII)

# How many listings of one batch L{run_async} reads at once: the folders
# of a page are looked into concurrently, without taking every thread of
# the storage pool from the other requests.
CONCURRENT_LISTINGS = 16


def first_after(
    names: Iterable[str], after: str | None, limit: int | None
) -> tuple[list[str], bool]:
    """
    The first C{limit} of C{names} that sort after C{after}, in plain
    string order.

    @param after: L{None} for every name.
    @param limit: L{None} for no limit.
    @return: those names, sorted, and whether they are all the names that
        sort after C{after}.
    """
    remaining = [name for name in names if after is None or name > after]
    if limit is None or len(remaining) <= limit:
        return sorted(remaining), True
    return heapq.nsmallest(limit, remaining), False


@dataclass(frozen=True)
class Listing:
    """
    What the search asks of one folder.

    @ivar folder: the folder's driver path.
    @ivar after: the page holds the child folders whose names sort after
        this one (L{None}: all of them).
    @ivar limit: how many of them the search may use (L{None}: all).
    @ivar marks: when not empty, the page says whether the folder holds a
        child, file or folder, whose name is one of these.
    """

    folder: str
    after: str | None
    limit: int | None
    marks: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class FolderPage:
    """
    What a driver read of one folder for a L{Listing}.  A missing folder
    (or a file) is L{EMPTY}.

    @ivar names: the names of the folder's child folders that sort after
        the listing's C{after}, sorted in plain string order: the first
        ones, at least C{limit} of them when there are that many (more may
        come along).
    @ivar complete: whether C{names} holds all of them.
    @ivar marked: whether the folder holds a child named one of the
        listing's C{marks}; C{False} when it asked for none.
    """

    names: Sequence[str]
    complete: bool
    marked: bool = False


EMPTY = FolderPage((), True)


def whole_listing(
    listing: Listing, children: Collection[str], folders: Iterable[str]
) -> FolderPage:
    """
    The page answering C{listing} from a whole listing of its folder.

    @param children: the names of all the folder's children.
    @param folders: the names of those that are folders (or may be: one
        that is a file lists as L{EMPTY} when the search looks into it).
    """
    names, complete = first_after(folders, listing.after, listing.limit)
    return FolderPage(names, complete, not listing.marks.isdisjoint(children))


# What the search yields, is sent, and returns.
Search = Generator[list[Listing], list[FolderPage], list[str]]
_Steps = Generator[list[Listing], list[FolderPage], None]


def search(
    path: str,
    marks: Collection[str],
    after: str | None,
    limit: int | None,
    at_once: int = CONCURRENT_LISTINGS,
) -> Search:
    """
    The search for the folders below C{path} that hold a child named one
    of C{marks}, in component order: the first C{limit} that sort after
    C{after}.  See L{txregistry.interfaces.IPagedLister.marked_folders}.

    @param at_once: how many folders a batch looks into at most: those a
        reader takes concurrently (L{run_async}); 1 for one that reads a
        listing after another (L{run}), which then reads no folder the
        page does not need.
    """
    finder = _Search(frozenset(marks), limit, at_once)
    if limit is None or limit > 0:
        yield from finder.below(path, "", after.split("/") if after else ())
    return finder.found


def run(steps: Search, read: Callable[[Listing], FolderPage]) -> list[str]:
    """Carry out a L{search}, reading each listing with C{read}, one after another."""
    try:
        batch = next(steps)
        while True:
            batch = steps.send([read(listing) for listing in batch])
    except StopIteration as stop:
        found: list[str] = stop.value
        return found


async def run_async(
    steps: Search,
    read: Callable[[Listing], Deferred[FolderPage]],
    concurrency: int = CONCURRENT_LISTINGS,
) -> list[str]:
    """
    Carry out a L{search}, reading the listings of a batch with C{read},
    up to C{concurrency} at once.
    """
    reading = DeferredSemaphore(concurrency)
    try:
        batch = next(steps)
        while True:
            try:
                pages = await gatherResults(
                    [reading.run(read, listing) for listing in batch], consumeErrors=True
                )
            except FirstError as error:
                error.subFailure.raiseException()
                raise
            batch = steps.send(pages)
    except StopIteration as stop:
        found: list[str] = stop.value
        return found


def _searched(name: str) -> bool:
    """
    Whether the search looks into a folder called C{name}: not when its
    name begins with an underscore (what belongs to the folder above, as
    a repository's C{_uploads}), nor when no driver path may hold it.
    """
    return not name.startswith("_") and name not in (".", "..") and bool(_NAME.fullmatch(name))


def _join(folder: str, name: str) -> str:
    return f"{'' if folder == '/' else folder}/{name}"


class _Search:
    """The state of one L{search}: what it looks for, and what it found."""

    def __init__(self, marks: frozenset[str], limit: int | None, at_once: int) -> None:
        self.marks = marks
        self.limit = limit
        self.at_once = at_once
        self.found: list[str] = []

    def _wanted(self) -> int | None:
        return None if self.limit is None else self.limit - len(self.found)

    def _done(self) -> bool:
        return self.limit is not None and len(self.found) >= self.limit

    def below(
        self,
        folder: str,
        prefix: str,
        bound: Sequence[str],
        page: FolderPage | None = None,
    ) -> _Steps:
        """
        Find the marked folders below C{folder} that sort after C{bound}.

        @param prefix: C{folder}'s name relative to the search's path, and
            a slash (empty for the path itself).
        @param bound: the components of C{after} still to pass at this
            level and below (none: everything below sorts after it).
        @param page: C{folder}'s first page, when it was read already (as
            it is when the folder was looked into for its marks).
        """
        after = bound[0] if bound else None
        if after is not None and _searched(after):
            # What is below the folder "after" names sorts after "after"
            # and before that folder's later siblings.
            yield from self.below(_join(folder, after), f"{prefix}{after}/", bound[1:])
        while not self._done():
            if page is None:
                [page] = yield [Listing(folder, after, self._wanted())]
            names = [name for name in page.names if _searched(name)]
            while names and not self._done():
                wanted = self._wanted()
                # A few folders at a time, not all the page may need: each
                # is looked into for its marks before it is known whether
                # the page needs it, and a folder that is not a repository
                # (an organisation's) may hold thousands.
                step = self.at_once if wanted is None else min(wanted, self.at_once)
                chunk, names = names[:step], names[step:]
                pages = yield [
                    Listing(_join(folder, name), None, wanted, self.marks) for name in chunk
                ]
                for name, inside in zip(chunk, pages, strict=True):
                    if inside.marked:
                        self.found.append(prefix + name)
                    if not self._done():
                        yield from self.below(_join(folder, name), f"{prefix}{name}/", (), inside)
                    if self._done():
                        return
            if page.complete or not page.names:
                return
            after, page = page.names[-1], None
