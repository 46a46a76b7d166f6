# -*- test-case-name: tests.test_config -*-
"""
The C{middleware} section: the storage middleware entries, in order.
Registry and repository middleware are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from txregistry.config.core import (
    NOT_YET,
    BuildContext,
    ConfigError,
    MiddlewareList,
    Section,
    Unsupported,
    as_mapping,
)


@dataclass(frozen=True)
class MiddlewareEntry:
    """
    One entry of a C{middleware} list: the plugin it names and its options.
    Whether the name is installed and the options suit it is for the plugin
    to say (see L{txregistry.middleware.storage}).

    @ivar key: the entry's key in the config, such as C{middleware.storage[0]},
        for naming it in errors.
    @ivar disabled: Distribution's flag for turning an entry off while
        keeping it in the file.
    """

    key: str
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    disabled: bool = False


@dataclass(frozen=True)
class MiddlewareConfig:
    """
    The C{middleware} section: the storage middleware, applied in order
    around the driver (the first entry wraps the driver itself).
    """

    storage: tuple[MiddlewareEntry, ...] = ()


_ENTRY_KEYS = ("name", "options", "disabled")


def _middleware_entries(section: str, entries: list[Any] | None) -> tuple[MiddlewareEntry, ...]:
    """
    The typed entries of the middleware list at C{section}.

    @raise ConfigError: naming the entry's key, for an entry without a name
        or with an unknown key or a value of the wrong kind.
    """
    parsed = []
    for index, entry in enumerate(entries or []):
        key = f"{section}[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(key, "must be a mapping with a name and options")
        for name in entry:
            if name not in _ENTRY_KEYS:
                raise ConfigError(f"{key}.{name}", "unknown key")
        name = entry.get("name")
        if name is None:
            raise ConfigError(f"{key}.name", "missing; the name of the middleware to apply")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{key}.name", "must be a non-empty string")
        options = entry.get("options")
        if options is not None and not isinstance(options, Mapping):
            raise ConfigError(f"{key}.options", "must be a mapping")
        for option in options or {}:
            if not isinstance(option, str):
                raise ConfigError(f"{key}.options.{option}", "keys must be strings")
        disabled = entry.get("disabled", False)
        if not isinstance(disabled, bool):
            raise ConfigError(f"{key}.disabled", "must be true or false")
        parsed.append(MiddlewareEntry(key, name, dict(options or {}), disabled))
    return tuple(parsed)


def _build(value: Any, context: BuildContext) -> MiddlewareConfig:
    """The typed C{middleware} section."""
    entries = as_mapping(value).get("storage")
    return MiddlewareConfig(storage=_middleware_entries("middleware.storage", entries))


SECTION = Section(
    "middleware",
    {
        "storage": MiddlewareList,
        "registry": Unsupported(f"registry middleware {NOT_YET}"),
        "repository": Unsupported(f"repository middleware {NOT_YET}"),
    },
    build=_build,
    attribute="middleware",
)
