# -*- test-case-name: tests.test_api_catalog -*-
"""
The catalog: every repository that holds manifests, found as Distribution
finds them (a folder with a C{_manifests} child below C{repositories}).
"""

from __future__ import annotations

from txregistry.drivers.errors import PathNotFoundError
from txregistry.interfaces import FileInfo, IStorageDriver
from txregistry.registry import paths


def path_order(name: str) -> list[str]:
    """Sort key of repository names: component by component, as Distribution."""
    return name.split("/")


async def repositories(driver: IStorageDriver) -> list[str]:
    """Every repository name, in catalog order."""
    found: list[str] = []
    prefix = paths.REPOSITORIES + "/"

    def visit(info: FileInfo) -> bool:
        name = info.path[len(prefix) :]
        base = name.rsplit("/", 1)[-1]
        if base == "_manifests":
            found.append(name[: -len("/_manifests")])
            return False
        return info.is_dir and not base.startswith("_")

    try:
        await driver.walk(paths.REPOSITORIES, visit)
    except PathNotFoundError:
        return []
    return sorted(found, key=path_order)
