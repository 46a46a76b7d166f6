# -*- test-case-name: tests.test_config -*-
"""
The C{auth} section: the one access controller that guards the registry,
and its options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from txregistry.config.core import AnyMapping, BuildContext, ConfigError, Section


@dataclass(frozen=True)
class AuthConfig:
    """
    The C{auth} section: the access controller it names and its options.
    Whether the name is installed and the options suit it is for the plugin
    to say (see L{txregistry.service}).
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


def _build(section: Mapping[str, Any] | None, context: BuildContext) -> AuthConfig | None:
    """
    The one access controller the C{auth} section names, if any.

    @raise ConfigError: for more than one controller, or options that are
        not a mapping.
    """
    if not section:
        return None
    if len(section) > 1:
        raise ConfigError("auth", f"names more than one access controller: {', '.join(section)}")
    name, options = next(iter(section.items()))
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"auth.{name}", "must be a mapping of options")
    return AuthConfig(str(name), dict(options or {}))


SECTION = Section("auth", AnyMapping, build=_build, attribute="auth")
