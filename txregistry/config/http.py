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

# The connection timeouts' defaults, in seconds.  Idle: Twisted's own (nginx
# keeps 75 s).  Headers: a request line and headers fit in one or two
# segments; 20 s leaves room for several retransmissions on a bad link
# (Apache's mod_reqtimeout allows 20 s to 40 s).  Body: nginx's
# client_body_timeout, the same "between two reads" measure.
IDLE_TIMEOUT = 60.0
READ_HEADER_TIMEOUT = 20.0
BODY_TIMEOUT = 60.0


@dataclass(frozen=True)
class HTTPConfig:
    """
    The C{http} section.

    The three connection timeouts are ours (Distribution sets none on its
    server); L{None} when disabled (configured as 0):

    @ivar idle_timeout: C{http.idletimeout}: how long a connection may wait
        between requests.
    @ivar read_header_timeout: C{http.readheadertimeout}: how long the
        request line and headers may take to arrive, from the first byte (from
        the connection's opening for its first request), however they trickle.
    @ivar body_timeout: C{http.bodytimeout}: how long a request body may go
        without a byte from the client, while the registry is reading it.
    """

    addr: str = ":5000"
    net: str = "tcp"
    prefix: str = "/"
    host: str | None = None
    secret: str | None = None
    relative_urls: bool = False
    headers: Mapping[str, list[str]] = field(default_factory=dict)
    drain_timeout: float = 0.0
    idle_timeout: float | None = IDLE_TIMEOUT
    read_header_timeout: float | None = READ_HEADER_TIMEOUT
    body_timeout: float | None = BODY_TIMEOUT
    endpoint: str = "tcp:5000"
    tls: TLSConfig | None = None
    debug: DebugConfig | None = None


@dataclass(frozen=True)
class DebugConfig:
    """
    The C{http.debug} section: a second listener, for operators only, that
    serves the Prometheus metrics (and whatever else is mounted on it).

    @ivar addr: Distribution's C{host:port}.
    @ivar endpoint: the Twisted endpoint string for C{addr}.
    @ivar prometheus_enabled: whether the metrics are kept and served.
    @ivar prometheus_path: where they are served.
    """

    addr: str
    endpoint: str
    prometheus_enabled: bool = False
    prometheus_path: str = "/metrics"


def endpoint_description(addr: str, net: str, key: str = "http.addr") -> str:
    """
    The Twisted endpoint string for Distribution's C{http.addr} and
    C{http.net}.

    @param key: the key to name in an error.
    @raise ConfigError: for an address that does not parse.
    """
    if net == "unix":
        return "unix:" + addr.replace(":", r"\:")
    found = re.fullmatch(r"(?:\[(?P<v6>[^\]]*)\]|(?P<host>[^:]*)):(?P<port>\d+)", addr)
    if found is None:
        raise ConfigError(key, f"{addr!r} is not host:port")
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


def _debug(value: Any) -> DebugConfig | None:
    """
    The typed C{http.debug} section, or L{None} when it is absent.

    @raise ConfigError: for a missing or unparsable address, or a path that
        is not absolute.
    """
    if value is None:
        return None
    debug = as_mapping(value)
    addr = debug.get("addr")
    if not addr:
        raise ConfigError("http.debug.addr", "is required when http.debug is set")
    prometheus = as_mapping(debug.get("prometheus"))
    path = prometheus.get("path") or "/metrics"
    if not path.startswith("/") or path == "/":
        raise ConfigError("http.debug.prometheus.path", "must be a path such as /metrics")
    return DebugConfig(
        addr=addr,
        endpoint=endpoint_description(addr, "tcp", "http.debug.addr"),
        prometheus_enabled=bool(prometheus.get("enabled", False)),
        prometheus_path=path,
    )


def _timeout(http: Mapping[str, Any], key: str, default: float) -> float | None:
    """A connection timeout in seconds, or L{None} when configured as 0."""
    seconds = parse_duration(f"http.{key}", http[key]) if key in http else default
    return seconds or None


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
    addr = http.get("addr")
    if addr is None:  # not set, or set to nothing
        addr = ":5000"
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
        idle_timeout=_timeout(http, "idletimeout", IDLE_TIMEOUT),
        read_header_timeout=_timeout(http, "readheadertimeout", READ_HEADER_TIMEOUT),
        body_timeout=_timeout(http, "bodytimeout", BODY_TIMEOUT),
        tls=build_tls(http.get("tls")),
        debug=_debug(http.get("debug")),
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
        "idletimeout": Duration,
        "readheadertimeout": Duration,
        "bodytimeout": Duration,
        "headers": AnyMapping,
        "http2": {"disabled": bool},
        "h2c": Ignored("h2c is not implemented; HTTP/1.1 is served"),
        "tls": TLS_SCHEMA,
        "debug": {"addr": str, "prometheus": {"enabled": bool, "path": str}},
    },
    build=_build,
    attribute="http",
)
