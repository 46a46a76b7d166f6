# -*- test-case-name: tests.test_config -*-
"""
The C{validation} section: which foreign layer URLs manifests may carry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from txregistry.config.core import (
    BuildContext,
    ConfigError,
    Ignored,
    Section,
    StringList,
    as_mapping,
)


@dataclass(frozen=True)
class ValidationConfig:
    """The C{validation} section: which foreign layer URLs manifests may carry."""

    disabled: bool = False
    url_allow: tuple[str, ...] = ()
    url_deny: tuple[str, ...] = ()


def _build(value: Any, context: BuildContext) -> ValidationConfig:
    """
    The typed C{validation} section.

    @raise ConfigError: naming the entry, for a URL pattern that is not a
        regular expression.
    """
    validation = as_mapping(value)
    urls = as_mapping(as_mapping(validation.get("manifests")).get("urls"))
    for key in ("allow", "deny"):
        for index, pattern in enumerate(urls.get(key) or []):
            try:
                re.compile(pattern)
            # re.compile raises OverflowError for a repetition past its
            # limit (a{4294967296}), RecursionError for deep nesting.
            except (re.error, OverflowError, RecursionError) as error:
                raise ConfigError(
                    f"validation.manifests.urls.{key}[{index}]",
                    f"is not a regular expression: {error}",
                ) from None
    return ValidationConfig(
        disabled=bool(validation.get("disabled", False)),
        url_allow=tuple(urls.get("allow") or ()),
        url_deny=tuple(urls.get("deny") or ()),
    )


SECTION = Section(
    "validation",
    {
        "enabled": Ignored("validation.enabled is deprecated; use validation.disabled"),
        "disabled": bool,
        "manifests": {"urls": {"allow": StringList, "deny": StringList}},
    },
    build=_build,
    attribute="validation",
)
