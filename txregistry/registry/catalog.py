# -*- test-case-name: tests.test_api_catalog -*-
"""
The catalog: every repository that holds blobs or manifests, found as
Distribution 2.8 finds them (a folder below C{repositories} with a
C{_layers} or C{_manifests} child; uploads alone do not make one).  A
repository whose tags were all deleted stays listed.
"""

from __future__ import annotations

from txregistry.drivers.errors import PathNotFoundError
from txregistry.interfaces import FileInfo, IStorageDriver
from txregistry.registry import paths


def path_order(name: str) -> list[str]:
    """Sort key of repository names: component by component, as Distribution."""
    return name.split("/")


async def repositories(driver: IStorageDriver) -> list[str]:
    """Every repository name, in catalog order, each once."""
    found: list[str] = []
    prefix = paths.REPOSITORIES + "/"

    def visit(info: FileInfo) -> bool:
        name = info.path[len(prefix) :]
        base = name.rsplit("/", 1)[-1]
        if base in ("_layers", "_manifests"):
            repository = name[: -len(base) - 1]
            if not found or found[-1] != repository:
                found.append(repository)
            return False
        return info.is_dir and not base.startswith("_")

    try:
        await driver.walk(paths.REPOSITORIES, visit)
    except PathNotFoundError:
        return []
    return sorted(found, key=path_order)
