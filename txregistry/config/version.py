# -*- test-case-name: tests.test_config -*-
"""
The C{version} section: which version of Distribution's format the
document is written in.  Only 0.1 is understood.
"""

from __future__ import annotations

from typing import Any

from txregistry.config.core import BuildContext, ConfigError, Section


def _check_version(version: Any, context: BuildContext) -> None:
    """
    @raise ConfigError: for a missing version, or one other than 0.1.
    """
    if version is None:
        raise ConfigError("version", "missing; Distribution's format needs version: 0.1")
    if str(version) != "0.1":
        raise ConfigError("version", f"unsupported version {version!r}; expected 0.1")


SECTION = Section("version", (str, float), build=_check_version)
