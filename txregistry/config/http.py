# -*- test-case-name: tests.test_config -*-
"""
The C{http} section: where and how the registry listens, the URLs it
writes, the headers it adds, and (through L{txregistry.config.tls}) HTTPS.
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
    Ignored,
    Section,
    as_mapping,
    parse_duration,
)
from txregistry.config.tls import TLS_SCHEMA, TLSConfig, build_tls


@dataclass(frozen=True)
class HTTPConfig:
    """The C{http} section."""

    addr: str = ":5000"
    net: str = "tcp"
    prefix: str = "/"
    host: str | None = None
    secret: str | None = None
    relative_urls: bool = False
    headers: Mapping[str, list[str]] = field(default_factory=dict)
    drain_timeout: float = 0.0
    endpoint: str = "tcp:5000"
    tls: TLSConfig | None = None


def endpoint_description(addr: str, net: str) -> str:
    """
    The Twisted endpoint string for Distribution's C{http.addr} and
    C{http.net}.

    @raise ConfigError: for an address that does not parse.
    """
    if net == "unix":
        return "unix:" + addr.replace(":", r"\:")
    found = re.fullmatch(r"(?:\[(?P<v6>[^\]]*)\]|(?P<host>[^:]*)):(?P<port>\d+)", addr)
    if found is None:
        raise ConfigError("http.addr", f"{addr!r} is not host:port")
    host = found.group("v6") or found.group("host") or ""
    description = f"tcp:{found.group('port')}"
    if host:
        if host == "localhost":
            host = "127.0.0.1"
        description += ":interface=" + host.replace(":", r"\:")
    return description


def _headers(value: Mapping[str, Any]) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, values in value.items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"http.headers.{name}", "must be a list of strings")
        headers[str(name)] = values
    return headers


def _build(value: Any, context: BuildContext) -> HTTPConfig:
    """
    The typed C{http} section.

    @raise ConfigError: for a network, prefix, host, address, header or
        duration that means nothing, and every mistake in C{http.tls}.
    """
    http = as_mapping(value)
    net = http.get("net", "tcp")
    if net not in ("tcp", "unix"):
        raise ConfigError("http.net", "must be tcp or unix")
    prefix = http.get("prefix", "/") or "/"
    if not prefix.startswith("/"):
        raise ConfigError("http.prefix", "must start with /")
    host = http.get("host")
    if host is not None and not re.match(r"^https?://[^/]+", host):
        raise ConfigError("http.host", "must be an absolute URL such as https://registry.example")
    addr = http.get("addr", ":5000")
    return HTTPConfig(
        addr=addr,
        endpoint=endpoint_description(addr, net),
        net=net,
        prefix=prefix if prefix.endswith("/") else prefix + "/",
        host=host.rstrip("/") if host else None,
        secret=http.get("secret"),
        relative_urls=bool(http.get("relativeurls", False)),
        headers=_headers(http.get("headers") or {}),
        drain_timeout=parse_duration("http.draintimeout", http.get("draintimeout", 0)),
        tls=build_tls(http.get("tls")),
    )


SECTION = Section(
    "http",
    {
        "addr": str,
        "net": str,
        "prefix": str,
        "host": str,
        "secret": str,
        "relativeurls": bool,
        "draintimeout": Duration,
        "headers": AnyMapping,
        "http2": {"disabled": bool},
        "h2c": Ignored("h2c is not implemented; HTTP/1.1 is served"),
        "tls": TLS_SCHEMA,
        "debug": Ignored("the debug server is not implemented yet; ignored"),
    },
    build=_build,
    attribute="http",
)
