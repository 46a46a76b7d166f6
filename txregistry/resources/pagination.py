# -*- test-case-name: tests.test_api_tags -*-
"""
Paging through sorted lists (tags, the catalog) with C{n} and C{last}, and
the RFC 5988 C{Link} header that points at the next page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from txregistry.errors import PAGINATION_NUMBER_INVALID
from txregistry.resources.app import RequestContext

# What an n of more than 18 digits says: more than any list holds.
_MORE_THAN_ANY = 10**18


def page_of(
    context: RequestContext,
    items: list[str],
    path: str,
    *,
    default: int | None,
    maximum: int | None,
    order: Callable[[str], Any] = lambda item: item,
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
