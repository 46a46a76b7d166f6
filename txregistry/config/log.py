# -*- test-case-name: tests.test_config -*-
"""
The C{log} section: the level, the format of the lines and the fields
added to each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from txregistry.config.core import (
    AnyMapping,
    BuildContext,
    ConfigError,
    Ignored,
    Section,
    as_mapping,
)


@dataclass(frozen=True)
class LogConfig:
    """The C{log} section."""

    level: str = "info"
    formatter: str = "text"
    fields: Mapping[str, Any] = field(default_factory=dict)
    accesslog_disabled: bool = False


_LEVELS = ("error", "warn", "warning", "info", "debug", "trace", "fatal", "panic")
_FORMATTERS = ("text", "json", "logstash")


def _build(value: Any, context: BuildContext) -> LogConfig:
    """
    The typed C{log} section; its level falls back on the top-level
    C{loglevel}.

    @raise ConfigError: for a level or formatter txregistry does not know.
    """
    log = as_mapping(value)
    level = str(log.get("level", context.document.get("loglevel", "info"))).lower()
    if level not in _LEVELS:
        raise ConfigError("log.level", f"must be one of {', '.join(_LEVELS[:5])}")
    formatter = log.get("formatter", "text")
    if formatter not in _FORMATTERS:
        raise ConfigError("log.formatter", f"must be one of {', '.join(_FORMATTERS)}")
    return LogConfig(
        level=level,
        formatter=formatter,
        fields=dict(log.get("fields") or {}),
        accesslog_disabled=bool(as_mapping(log.get("accesslog")).get("disabled", False)),
    )


SECTION = Section(
    "log",
    {
        "level": str,
        "formatter": str,
        "fields": AnyMapping,
        "reportcaller": bool,
        "hooks": Ignored("log hooks (mail) are not implemented; ignored"),
        "accesslog": {"disabled": bool},
    },
    build=_build,
    attribute="log",
)
