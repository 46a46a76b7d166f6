# -*- test-case-name: tests.test_config -*-
"""
The C{health} section: Distribution's health checks of the storage driver,
of files, of HTTP URIs and of TCP addresses (see L{txregistry.health}).

The defaults are Distribution's (C{configuration.go}, C{handlers/app.go}):
an interval that is absent or zero is ten seconds; a threshold that is
absent or zero means one failure makes the check fail; a status code that
is absent or zero is 200.  Distribution has no default timeout (Go waits as
long as the system lets it); here an absent or zero timeout is the check's
interval, so that a check never runs longer than the time between two.
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
    as_mapping,
    check,
    header_lists,
    http_url,
    parse_duration,
)

DEFAULT_INTERVAL = 10.0


@dataclass(frozen=True)
class StorageDriverCheckConfig:
    """
    C{health.storagedriver}: whether the storage driver answers.

    @ivar interval: seconds between two checks.
    @ivar threshold: failures in a row before the check fails.
    """

    enabled: bool = False
    interval: float = DEFAULT_INTERVAL
    threshold: int = 1


@dataclass(frozen=True)
class FileCheckConfig:
    """One entry of C{health.file}: the check fails while C{file} exists."""

    file: str
    interval: float = DEFAULT_INTERVAL


@dataclass(frozen=True)
class HTTPCheckConfig:
    """
    One entry of C{health.http}: a C{HEAD} request to C{uri} must answer
    C{statuscode} within C{timeout} seconds.

    @ivar headers: header name to the values sent with every request.
    """

    uri: str
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    statuscode: int = 200
    timeout: float = DEFAULT_INTERVAL
    interval: float = DEFAULT_INTERVAL
    threshold: int = 1


@dataclass(frozen=True)
class TCPCheckConfig:
    """
    One entry of C{health.tcp}: a connection to C{host}:C{port} (C{addr})
    must open within C{timeout} seconds.
    """

    addr: str
    host: str
    port: int
    timeout: float = DEFAULT_INTERVAL
    interval: float = DEFAULT_INTERVAL
    threshold: int = 1


@dataclass(frozen=True)
class HealthConfig:
    """The C{health} section."""

    storagedriver: StorageDriverCheckConfig = StorageDriverCheckConfig()
    files: tuple[FileCheckConfig, ...] = ()
    http: tuple[HTTPCheckConfig, ...] = ()
    tcp: tuple[TCPCheckConfig, ...] = ()

    @property
    def enabled(self) -> bool:
        """Whether any check is configured."""
        return self.storagedriver.enabled or bool(self.files or self.http or self.tcp)


_STORAGEDRIVER_SCHEMA = {"enabled": bool, "interval": Duration, "threshold": int}
_FILE_SCHEMA = {"file": str, "interval": Duration}
_HTTP_SCHEMA = {
    "uri": str,
    "headers": AnyMapping,
    "statuscode": int,
    "timeout": Duration,
    "interval": Duration,
    "threshold": int,
}
_TCP_SCHEMA = {"addr": str, "timeout": Duration, "interval": Duration, "threshold": int}

# The check of the whole document cannot say what the lists hold; the
# builder checks them, and refuses any other unlisted key.
_LISTS = ("file", "http", "tcp")
_SCHEMA = OpenSchema({"storagedriver": _STORAGEDRIVER_SCHEMA})


def _duration(key: str, value: Any, default: float) -> float:
    # As Distribution: absent or zero is the default; negative is a mistake.
    seconds = 0.0 if value is None else parse_duration(key, value)
    if seconds < 0:
        raise ConfigError(key, "must not be negative")
    return seconds or default


def _threshold(key: str, value: Any) -> int:
    if value is None or value == 0:
        return 1
    if value < 0:
        raise ConfigError(key, "must not be negative")
    return int(value)


def _required(key: str, value: Any, what: str) -> str:
    if value is None or value == "":
        raise ConfigError(key, f"missing; {what}")
    return str(value)


def _uri(key: str, value: Any) -> str:
    return http_url(key, _required(key, value, "the URI to check"))


def _address(key: str, value: Any) -> tuple[str, str, int]:
    """C{addr}, its host and its port: C{host:port} or C{[v6 address]:port}."""
    addr = _required(key, value, "the host and port to connect to")
    # A port has at most five digits (and int() reads no more than 4300).
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", addr)
    if match is None:
        raise ConfigError(key, "must be host:port (an IPv6 address in brackets)")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 0 < port < 65536:
        raise ConfigError(key, "the port must be from 1 to 65535")
    return addr, host, port


def _statuscode(key: str, value: Any) -> int:
    if value is None or value == 0:
        return 200
    if not 100 <= value <= 599:
        raise ConfigError(key, "must be an HTTP status code, from 100 to 599")
    return int(value)


def _entries(value: Any, kind: str, schema: Mapping[str, Any], warnings: list[str]) -> list[Any]:
    """The checked entries of the list C{health.<kind>}, with their keys."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"health.{kind}", "must be a list of checks")
    entries = []
    for index, entry in enumerate(value):
        key = f"health.{kind}[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(key, "must be a mapping")
        check(key, entry, dict(schema), warnings.append)
        entries.append((key, entry))
    return entries


def _file(key: str, entry: Mapping[str, Any]) -> FileCheckConfig:
    return FileCheckConfig(
        file=_required(f"{key}.file", entry.get("file"), "the path of the file to check"),
        interval=_duration(f"{key}.interval", entry.get("interval"), DEFAULT_INTERVAL),
    )


def _http(key: str, entry: Mapping[str, Any]) -> HTTPCheckConfig:
    interval = _duration(f"{key}.interval", entry.get("interval"), DEFAULT_INTERVAL)
    return HTTPCheckConfig(
        uri=_uri(f"{key}.uri", entry.get("uri")),
        headers=header_lists(f"{key}.headers", entry.get("headers")),
        statuscode=_statuscode(f"{key}.statuscode", entry.get("statuscode")),
        timeout=_duration(f"{key}.timeout", entry.get("timeout"), interval),
        interval=interval,
        threshold=_threshold(f"{key}.threshold", entry.get("threshold")),
    )


def _tcp(key: str, entry: Mapping[str, Any]) -> TCPCheckConfig:
    interval = _duration(f"{key}.interval", entry.get("interval"), DEFAULT_INTERVAL)
    addr, host, port = _address(f"{key}.addr", entry.get("addr"))
    return TCPCheckConfig(
        addr=addr,
        host=host,
        port=port,
        timeout=_duration(f"{key}.timeout", entry.get("timeout"), interval),
        interval=interval,
        threshold=_threshold(f"{key}.threshold", entry.get("threshold")),
    )


def _build(value: Any, context: BuildContext) -> HealthConfig:
    """
    The typed C{health} section.

    @raise ConfigError: naming the key at fault: an unknown key, a missing
        or malformed C{file}, C{uri} or C{addr}, a negative duration or
        threshold, a status code out of range, or a check given twice
        (Distribution names each check by its file, URI or address).
    """
    health = as_mapping(value)
    for key in health:
        if key not in _LISTS and key not in _SCHEMA:
            raise ConfigError(f"health.{key}", "unknown key")
    storagedriver = as_mapping(health.get("storagedriver"))
    files = tuple(
        _file(key, entry)
        for key, entry in _entries(health.get("file"), "file", _FILE_SCHEMA, context.warnings)
    )
    http = tuple(
        _http(key, entry)
        for key, entry in _entries(health.get("http"), "http", _HTTP_SCHEMA, context.warnings)
    )
    tcp = tuple(
        _tcp(key, entry)
        for key, entry in _entries(health.get("tcp"), "tcp", _TCP_SCHEMA, context.warnings)
    )
    seen: dict[str, str] = {}
    named = [
        *((f"health.file[{i}].file", one.file) for i, one in enumerate(files)),
        *((f"health.http[{i}].uri", one.uri) for i, one in enumerate(http)),
        *((f"health.tcp[{i}].addr", one.addr) for i, one in enumerate(tcp)),
    ]
    for key, name in named:
        first = seen.setdefault(name, key)
        if first != key:
            raise ConfigError(key, f"{name!r} is checked already by {first}")
    return HealthConfig(
        storagedriver=StorageDriverCheckConfig(
            enabled=bool(storagedriver.get("enabled", False)),
            interval=_duration(
                "health.storagedriver.interval", storagedriver.get("interval"), DEFAULT_INTERVAL
            ),
            threshold=_threshold("health.storagedriver.threshold", storagedriver.get("threshold")),
        ),
        files=files,
        http=http,
        tcp=tcp,
    )


SECTION = Section("health", _SCHEMA, build=_build, attribute="health")
