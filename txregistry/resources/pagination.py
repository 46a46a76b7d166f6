# -*- test-case-name: tests.test_api_tags -*-
"""
Paging through sorted lists (tags, the catalog) with C{n} and C{last}, and
the RFC 5988 C{Link} header that points at the next page.  A list held in
memory is cut into pages (L{page_of}); a list in storage is read a page at
a time (L{page_from}), one item more than the page to know whether another
page follows, and the page is cut from what was read as from a whole list
(a pull-through cache's tags, upstream's list, are read whole).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from txregistry.errors import PAGINATION_NUMBER_INVALID, RegistryError
from txregistry.resources.app import RequestContext

# What an n of more than 18 digits says: more than any list holds.
_MORE_THAN_ANY = 10**18


def _identity(item: str) -> str:
    return item


def _page_size(context: RequestContext, *, default: int | None, maximum: int | None) -> int | None:
    """
    How many items the page the request asks for holds (C{n}).

    @param default: the page size when C{n} is absent (L{None}: everything).
    @param maximum: the largest C{n} allowed (L{None}: no limit).
    @raise txregistry.errors.RegistryError: PAGINATION_NUMBER_INVALID for
        an C{n} that is not a whole number from 0 to C{maximum}.
    """
    count_text = context.head.argument("n")
    count = default
    if count_text is not None and count_text != "":
        # ASCII digits only: str.isdigit() takes "²", which int() refuses.
        if not (count_text.isascii() and count_text.isdigit()):
            raise PAGINATION_NUMBER_INVALID({"n": count_text})
        digits = count_text.lstrip("0") or "0"
        # Not int() whatever the length: it reads no more than 4300 digits.
        count = int(digits) if len(digits) <= 18 else _MORE_THAN_ANY
        if maximum is not None and count > maximum:
            raise PAGINATION_NUMBER_INVALID({"n": count, "maximum": maximum})
    if maximum is not None and count is not None:
        count = min(count, maximum)
    return count


def page_of(
    context: RequestContext,
    items: list[str],
    path: str,
    *,
    default: int | None,
    maximum: int | None,
    order: Callable[[str], Any] = _identity,
) -> tuple[list[str], dict[str, str]]:
    """
    The page of C{items} (sorted by C{order}) the request asks for, and the
    headers to answer with.

    @param path: the list's path below C{/v2/}, for the C{Link} header.
    @param default: the page size when C{n} is absent (L{None}: everything).
    @param maximum: the largest C{n} allowed (L{None}: no limit).
    @raise txregistry.errors.RegistryError: PAGINATION_NUMBER_INVALID for
        an C{n} that is not a whole number from 0 to C{maximum}.
    """
    count = _page_size(context, default=default, maximum=maximum)
    return _cut(context, items, path, count, order)


async def page_from(
    context: RequestContext,
    read: Callable[[str | None, int | None], Awaitable[list[str] | None]],
    path: str,
    *,
    default: int | None,
    maximum: int | None,
    order: Callable[[str], Any] = _identity,
) -> tuple[list[str], dict[str, str]] | None:
    """
    The page the request asks for, read with C{read}, and the headers to
    answer with: those L{page_of} answers with for the whole list.

    @param read: called with C{last} (L{None} when absent or empty) and
        how many items to read (L{None}: all), returns the items sorting
        after C{last} (by C{order}), sorted, at least that many of them when
        there are; or L{None} when the list does not exist.  It may return
        more, and items at or before C{last} (a list held in memory, whole):
        the page is cut from what it returns.
    @param path: the list's path below C{/v2/}, for the C{Link} header.
    @param default: the page size when C{n} is absent (L{None}: everything).
    @param maximum: the largest C{n} allowed (L{None}: no limit).
    @return: L{None} when C{read} says the list does not exist, which it is
        asked before an invalid C{n} is refused (as when the whole list was
        read first).
    @raise txregistry.errors.RegistryError: PAGINATION_NUMBER_INVALID for
        an C{n} that is not a whole number from 0 to C{maximum}.
    """
    last = context.head.argument("last") or None
    try:
        count = _page_size(context, default=default, maximum=maximum)
    except RegistryError:
        if await read(None, 0) is None:
            return None
        raise
    # One more than the page: whether it exists says whether a next page does.
    items = await read(last, None if count is None else count + 1)
    if items is None:
        return None
    return _cut(context, items, path, count, order)


def _cut(
    context: RequestContext,
    items: list[str],
    path: str,
    count: int | None,
    order: Callable[[str], Any],
) -> tuple[list[str], dict[str, str]]:
    """The page of C{count} items after the request's C{last}, and its C{Link} header."""
    last = context.head.argument("last")
    remaining = items
    if last:
        bound = order(last)
        remaining = [item for item in items if order(item) > bound]
    if count is None or len(remaining) <= count:
        return remaining, {}
    page = remaining[:count]
    if not page:
        return page, {}
    return page, {"Link": context.urls.next_page(path, page[-1], count)}
