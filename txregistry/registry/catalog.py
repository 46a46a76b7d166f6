# -*- test-case-name: tests.test_api_catalog -*-
"""
The catalog: every repository that holds blobs or manifests, found as
Distribution 2.8 finds them (a folder below C{repositories} with a
C{_layers} or C{_manifests} child; uploads alone do not make one).  A
repository whose tags were all deleted stays listed.

A page is read from where it starts
(L{txregistry.interfaces.IPagedLister.marked_folders}): what sorts before
C{last} is not read, and the search stops once the page is full, so paging
through the catalog costs about as much as reading it once.
"""

from __future__ import annotations

from txregistry.drivers.base import marked_folders
from txregistry.interfaces import IStorageDriver
from txregistry.registry import paths

# The children that make a folder below "repositories" a repository.
MARKS = ("_layers", "_manifests")


def path_order(name: str) -> list[str]:
    """Sort key of repository names: component by component, as Distribution."""
    return name.split("/")


async def repositories_page(
    driver: IStorageDriver, after: str | None, limit: int | None
) -> list[str]:
    """
    The repository names that sort after C{after} in catalog order
    (L{path_order}; C{after} need not name a repository): the first
    C{limit} of them, in that order.

    @param after: L{None} (or C{""}) for the first page.
    @param limit: L{None} for every one.
    """
    return await marked_folders(driver, paths.REPOSITORIES, MARKS, after or None, limit)


async def repositories(driver: IStorageDriver) -> list[str]:
    """Every repository name, in catalog order, each once."""
    return await repositories_page(driver, None, None)
