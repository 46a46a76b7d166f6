# -*- test-case-name: tests.test_config -*-
"""
The C{notifications} section: Distribution's event endpoints and event
format, and txregistry's own keys: each endpoint's C{sink} (the notifier
plugin that delivers its events) and C{options}, and C{outbox} (where
undelivered events wait on disk, and how much of them).

An endpoint's defaults are Distribution's (C{notifications/endpoint.go}):
a timeout, threshold or backoff that is absent, zero or negative takes
its default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from txregistry.config.core import (
    AnyMapping,
    BuildContext,
    ConfigError,
    Duration,
    OpenSchema,
    Section,
    StringList,
    as_mapping,
    check,
    header_lists,
    http_url,
    parse_duration,
)


@dataclass(frozen=True)
class IgnoreConfig:
    """
    An endpoint's C{ignore}: the events it is not sent.

    @ivar media_types: events about content of these media types.
    @ivar actions: events of these actions (among L{ACTIONS}).
    """

    media_types: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()


@dataclass(frozen=True)
class EndpointConfig:
    """
    One entry of C{notifications.endpoints}.

    @ivar name: names the endpoint's files on disk and its metrics; unique.
    @ivar url: where the webhook sink posts events.
    @ivar headers: header name to the values sent with every request.
    @ivar timeout: seconds to wait for one delivery.
    @ivar threshold: failures in a row before delivery backs off.
    @ivar backoff: seconds to back off for.
    @ivar ignored_media_types: Distribution's older spelling of
        C{ignore.mediatypes}; both apply.
    @ivar sink: the name of the notifier plugin that delivers the events.
    @ivar options: the sink's own options, for the plugin to check.
    """

    name: str
    url: str
    disabled: bool = False
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    timeout: float = 1.0
    threshold: int = 10
    backoff: float = 1.0
    ignored_media_types: tuple[str, ...] = ()
    ignore: IgnoreConfig = IgnoreConfig()
    sink: str = "webhook"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboxConfig:
    """
    C{notifications.outbox}: the events not delivered yet, kept on disk.

    @ivar path: the directory, or L{None} for the built-in default.
    @ivar max_bytes: the most undelivered events may take.
    """

    path: str | None = None
    max_bytes: int = 1 << 30


@dataclass(frozen=True)
class NotificationsConfig:
    """
    The C{notifications} section.

    @ivar include_references: C{events.includereferences}: manifest events
        carry the manifest's references.
    """

    endpoints: tuple[EndpointConfig, ...] = ()
    include_references: bool = False
    outbox: OutboxConfig = OutboxConfig()

    def enabled_endpoints(self) -> tuple[EndpointConfig, ...]:
        """The endpoints that are not disabled, in order."""
        return tuple(endpoint for endpoint in self.endpoints if not endpoint.disabled)


# The actions an event may have, which C{ignore.actions} may name.
ACTIONS = ("pull", "push", "mount", "delete")

_NAME = "[A-Za-z0-9][A-Za-z0-9._-]*"

_ENDPOINT_SCHEMA = {
    "name": str,
    "disabled": bool,
    "url": str,
    "headers": AnyMapping,
    "timeout": Duration,
    "threshold": int,
    "backoff": Duration,
    "ignoredmediatypes": StringList,
    "ignore": {"mediatypes": StringList, "actions": StringList},
    "sink": str,
    "options": AnyMapping,
}

# The check of the whole document cannot say what an endpoint list holds;
# the builder checks C{endpoints}, and refuses any other unlisted key.
_SCHEMA = OpenSchema(
    {
        "events": {"includereferences": bool},
        "outbox": {"path": str, "maxbytes": int},
    }
)


def _name(key: str, value: Any) -> str:
    if value is None:
        raise ConfigError(key, "missing; the endpoint's name")
    if re.fullmatch(_NAME, value) is None:
        raise ConfigError(
            key, f"must match {_NAME}, since it names the endpoint's files and metrics"
        )
    return str(value)


def _url(key: str, value: Any) -> str:
    if value is None:
        raise ConfigError(key, "missing; the URL events are sent to")
    return http_url(key, value)


def _positive_duration(key: str, value: Any, default: float) -> float:
    # As Distribution: absent, zero or negative is the default.
    seconds = 0.0 if value is None else parse_duration(key, value)
    return seconds if seconds > 0 else default


def _ignore(key: str, value: Any) -> IgnoreConfig:
    ignore = as_mapping(value)
    actions = tuple(ignore.get("actions") or ())
    for index, action in enumerate(actions):
        if action not in ACTIONS:
            raise ConfigError(f"{key}.actions[{index}]", f"must be one of {', '.join(ACTIONS)}")
    return IgnoreConfig(media_types=tuple(ignore.get("mediatypes") or ()), actions=actions)


def _endpoint(key: str, entry: Any, warnings: list[str]) -> EndpointConfig:
    """
    The typed endpoint at C{key}, such as C{notifications.endpoints[0]}.

    @raise ConfigError: naming the key at fault.
    """
    if not isinstance(entry, dict):
        raise ConfigError(key, "must be a mapping with a name and url")
    check(key, entry, _ENDPOINT_SCHEMA, warnings.append)
    sink = entry.get("sink")
    if sink == "":
        raise ConfigError(f"{key}.sink", "must be a non-empty string")
    options = entry.get("options") or {}
    for option in options:
        if not isinstance(option, str):
            raise ConfigError(f"{key}.options.{option}", "keys must be strings")
    defaults = EndpointConfig("", "")
    threshold = entry.get("threshold")
    return EndpointConfig(
        name=_name(f"{key}.name", entry.get("name")),
        # Only the webhook needs a URL; another sink may take one.
        url=_url(f"{key}.url", entry.get("url"))
        if sink in (None, "webhook") or entry.get("url") is not None
        else "",
        disabled=bool(entry.get("disabled", False)),
        headers=header_lists(f"{key}.headers", entry.get("headers")),
        timeout=_positive_duration(f"{key}.timeout", entry.get("timeout"), defaults.timeout),
        threshold=threshold if threshold is not None and threshold > 0 else defaults.threshold,
        backoff=_positive_duration(f"{key}.backoff", entry.get("backoff"), defaults.backoff),
        ignored_media_types=tuple(entry.get("ignoredmediatypes") or ()),
        ignore=_ignore(f"{key}.ignore", entry.get("ignore")),
        sink=defaults.sink if sink is None else sink,
        options=dict(options),
    )


def _endpoints(value: Any, warnings: list[str]) -> tuple[EndpointConfig, ...]:
    """
    The typed C{notifications.endpoints}.

    @raise ConfigError: naming the key at fault, for a value that is not a
        list, a mistake in an entry, or a name given twice.
    """
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError("notifications.endpoints", "must be a list of endpoints")
    endpoints = []
    # Case-folded: two names differing only in case are one file on some
    # filesystems.
    seen: dict[str, str] = {}
    for index, entry in enumerate(value):
        key = f"notifications.endpoints[{index}]"
        endpoint = _endpoint(key, entry, warnings)
        first = seen.setdefault(endpoint.name.casefold(), key)
        if first != key:
            raise ConfigError(f"{key}.name", f"{endpoint.name!r} is already the name of {first}")
        endpoints.append(endpoint)
    return tuple(endpoints)


def _outbox(value: Any) -> OutboxConfig:
    outbox = as_mapping(value)
    defaults = OutboxConfig()
    path = outbox.get("path")
    if path == "":
        raise ConfigError("notifications.outbox.path", "must not be empty; leave it out instead")
    max_bytes = outbox.get("maxbytes")
    if max_bytes is None:
        max_bytes = defaults.max_bytes
    if max_bytes <= 0:
        raise ConfigError("notifications.outbox.maxbytes", "must be a positive integer")
    return OutboxConfig(path=path, max_bytes=max_bytes)


def _build(value: Any, context: BuildContext) -> NotificationsConfig:
    """
    The typed C{notifications} section.

    @raise ConfigError: naming the key at fault, for an unknown key and every
        mistake in the endpoints or the outbox.
    """
    notifications = as_mapping(value)
    for key in notifications:
        if key != "endpoints" and key not in _SCHEMA:
            raise ConfigError(f"notifications.{key}", "unknown key")
    return NotificationsConfig(
        endpoints=_endpoints(notifications.get("endpoints"), context.warnings),
        include_references=bool(
            as_mapping(notifications.get("events")).get("includereferences", False)
        ),
        outbox=_outbox(notifications.get("outbox")),
    )


SECTION = Section("notifications", _SCHEMA, build=_build, attribute="notifications")
