# -*- test-case-name: tests.test_config -*-
"""
The C{catalog} section: how many repositories one page of C{/v2/_catalog}
may list.
"""

from __future__ import annotations

from typing import Any

from txregistry.config.core import BuildContext, ConfigError, Section, as_mapping


def _build(value: Any, context: BuildContext) -> int:
    """
    C{catalog.maxentries}, 1000 when not set (or set to nothing).

    @raise ConfigError: for a number that is not positive.
    """
    max_entries: int | None = as_mapping(value).get("maxentries")
    if max_entries is None:
        return 1000
    if max_entries <= 0:
        raise ConfigError("catalog.maxentries", "must be a positive integer")
    return max_entries


SECTION = Section("catalog", {"maxentries": int}, build=_build, attribute="catalog_max_entries")
