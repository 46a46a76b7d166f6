# -*- test-case-name: tests.test_config -*-
"""
The C{redis} section: the one Redis server a cache plugin (the C{redis}
blob descriptor cache) connects to.

Both of Distribution's spellings are read: 2.8's (C{addr}, C{pool.maxidle},
C{pool.maxactive}, C{pool.idletimeout}, C{tls.enabled}) and 3's, which
takes go-redis's options (C{addrs}, C{username}, C{maxidleconns},
C{poolsize}, C{connmaxidletime}) and a client certificate (C{tls.certificate},
C{tls.key}, C{tls.clientcas}).  A section with no value set, as for
Distribution, configures no Redis.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from txregistry.config.core import (
    BuildContext,
    ConfigError,
    Duration,
    Schema,
    Section,
    StringList,
    as_mapping,
    parse_duration,
)

DEFAULT_PORT = 6379


@dataclass(frozen=True)
class RedisPoolConfig:
    """
    C{redis.pool}: the connections kept to the server.

    @ivar max_idle: the most idle connections kept open (C{pool.maxidle},
        or Distribution 3's C{maxidleconns}).
    @ivar max_active: the most connections open at once; more requests wait
        for one (C{pool.maxactive}, or Distribution 3's C{poolsize}).
    @ivar idle_timeout: seconds after which an idle connection is closed
        (C{pool.idletimeout}, or Distribution 3's C{connmaxidletime}).
    """

    max_idle: int = 16
    max_active: int = 64
    idle_timeout: float = 300.0


@dataclass(frozen=True)
class RedisTLSConfig:
    """
    C{redis.tls}: talk to the server over TLS.  The files are only named
    here; they are read when the connection is made.

    @ivar enabled: use TLS: Distribution 2.8's C{tls.enabled}, or implied by
        Distribution 3's C{tls.certificate} or C{tls.clientcas}.
    @ivar certificate: a PEM file: the client certificate to present, for a
        server that asks for one.
    @ivar key: a PEM file: the client certificate's private key.
    @ivar client_cas: PEM files of the CAs the server's certificate is
        checked against (C{tls.clientcas}), instead of the system's.
    """

    enabled: bool = False
    certificate: str | None = None
    key: str | None = None
    client_cas: tuple[str, ...] = ()


@dataclass(frozen=True)
class RedisConfig:
    """
    The C{redis} section.

    @ivar host: the server's host name or address (an IPv6 one without its
        brackets).
    @ivar port: the server's port, 6379 unless C{addr} names one.
    @ivar username: the ACL user to authenticate as (Redis 6 and later), or
        L{None} for the default user.
    @ivar password: the password to authenticate with, or L{None}.
    @ivar db: the database number to select.
    @ivar dial_timeout: seconds to wait for a connection.
    @ivar read_timeout: seconds to wait for a reply.
    @ivar write_timeout: seconds to wait for a command to be written.
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    db: int = 0
    dial_timeout: float = 1.0
    read_timeout: float = 0.1
    write_timeout: float = 0.1
    pool: RedisPoolConfig = RedisPoolConfig()
    tls: RedisTLSConfig = RedisTLSConfig()

    @property
    def addr(self) -> str:
        """C{host:port}, as C{redis.addr} is written (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


_POOL_SCHEMA: Schema = {"maxidle": int, "maxactive": int, "idletimeout": Duration}

_TLS_SCHEMA: Schema = {
    "enabled": bool,
    "certificate": str,
    "key": str,
    "clientcas": StringList,
}

_SCHEMA: Schema = {
    "addr": str,
    "addrs": StringList,
    "username": str,
    "password": str,
    "db": int,
    "dialtimeout": Duration,
    "readtimeout": Duration,
    "writetimeout": Duration,
    "pool": _POOL_SCHEMA,
    # Distribution 3's names for the pool's settings.
    "maxidleconns": int,
    "poolsize": int,
    "connmaxidletime": Duration,
    "tls": _TLS_SCHEMA,
}

# A port has at most five digits (and int() reads no more than 4300).
_ADDR = re.compile(r"(?:\[(?P<v6>[^\[\]\s/]+)\]|(?P<host>[^:\[\]\s/]+))(?::(?P<port>\d{1,5}))?")


def _host_port(key: str, addr: str) -> tuple[str, int]:
    """
    The host and port in C{addr}: C{host:port}, C{[v6]:port}, or either
    without its port for Redis's.

    @raise ConfigError: naming C{key}, for an address that does not parse
        or a port out of range.
    """
    found = _ADDR.fullmatch(addr)
    if found is None:
        raise ConfigError(key, f"{addr!r} is not host:port ([address]:port for IPv6)")
    port = int(found.group("port") or DEFAULT_PORT)
    if not 1 <= port <= 65535:
        raise ConfigError(key, f"port {port} is out of range (1-65535)")
    return found.group("v6") or found.group("host"), port


def _server(redis: Mapping[str, Any]) -> tuple[str, int]:
    """
    The host and port of C{redis.addr}, or of Distribution 3's one-element
    C{redis.addrs}.

    @raise ConfigError: naming the key, for neither or both, more than one
        server, or an address that does not parse.
    """
    addr = redis.get("addr")
    addrs = redis.get("addrs")
    if addr and addrs:
        raise ConfigError("redis.addrs", "give redis.addr or redis.addrs, not both")
    if addrs:
        if len(addrs) != 1:
            raise ConfigError("redis.addrs", "txregistry connects to one Redis server")
        return _host_port("redis.addrs[0]", addrs[0])
    if not addr:
        raise ConfigError("redis.addr", "missing; the Redis server's host:port")
    return _host_port("redis.addr", addr)


def _timeout(key: str, value: Any, default: float) -> float:
    """Seconds in the duration C{value}, C{default} when absent; refuses zero or less."""
    if value is None:
        return default
    seconds = parse_duration(key, value)
    if seconds <= 0:
        raise ConfigError(key, "must be a positive duration")
    return seconds


def _either(redis: Mapping[str, Any], pool_key: str, flat_key: str) -> tuple[str, Any]:
    """
    The dotted key and value of a pool setting, given as C{pool.<pool_key>}
    (Distribution 2.8) or C{<flat_key>} (Distribution 3); the value is
    L{None} for neither.

    @raise ConfigError: naming the second, when both are given.
    """
    pool_value = as_mapping(redis.get("pool")).get(pool_key)
    flat_value = redis.get(flat_key)
    if pool_value is not None and flat_value is not None:
        raise ConfigError(f"redis.{flat_key}", f"redis.pool.{pool_key} already sets it")
    if flat_value is not None:
        return f"redis.{flat_key}", flat_value
    return f"redis.pool.{pool_key}", pool_value


def _pool(redis: Mapping[str, Any]) -> RedisPoolConfig:
    defaults = RedisPoolConfig()
    key, max_idle = _either(redis, "maxidle", "maxidleconns")
    if max_idle is None:
        max_idle = defaults.max_idle
    if max_idle < 0:
        raise ConfigError(key, "must not be negative")
    key, max_active = _either(redis, "maxactive", "poolsize")
    if max_active is None:
        max_active = defaults.max_active
    if max_active < 1:
        raise ConfigError(key, "must be at least 1")
    key, idle_timeout = _either(redis, "idletimeout", "connmaxidletime")
    return RedisPoolConfig(
        max_idle=max_idle,
        max_active=max_active,
        idle_timeout=_timeout(key, idle_timeout, defaults.idle_timeout),
    )


def _tls(value: Any) -> RedisTLSConfig:
    tls = as_mapping(value)
    # As in Go, an empty string is no file.
    certificate = tls.get("certificate") or None
    key = tls.get("key") or None
    if certificate is not None and key is None:
        raise ConfigError("redis.tls.key", "missing; the client certificate's private key")
    if key is not None and certificate is None:
        raise ConfigError("redis.tls.certificate", "missing; the certificate of redis.tls.key")
    client_cas = tuple(tls.get("clientcas") or ())
    for index, path in enumerate(client_cas):
        if not path:
            raise ConfigError(
                f"redis.tls.clientcas[{index}]", "must name a file of CA certificates"
            )
    enabled = tls.get("enabled")
    implied = certificate is not None or bool(client_cas)
    if enabled is False and implied:
        raise ConfigError(
            "redis.tls.enabled",
            "is false, but redis.tls.certificate or redis.tls.clientcas asks for TLS",
        )
    return RedisTLSConfig(
        enabled=bool(enabled) or implied,
        certificate=certificate,
        key=key,
        client_cas=client_cas,
    )


def _required_by_cache(context: BuildContext) -> bool:
    """Whether C{storage.cache.blobdescriptor} names the Redis cache."""
    cache = as_mapping(as_mapping(context.document.get("storage")).get("cache"))
    return cache.get("blobdescriptor") == "redis"


def _build(value: Any, context: BuildContext) -> RedisConfig | None:
    """
    The typed C{redis} section, or L{None} when it is absent or sets no
    value.

    @raise ConfigError: naming the key at fault: a missing or unparsable
        address, more than one server, a negative C{db}, a timeout of zero
        or less, a pool that allows no connection, a TLS certificate without
        its key; or no section when C{storage.cache.blobdescriptor} is
        C{redis}.
    """
    redis = as_mapping(value)
    if not any(redis.values()):
        if _required_by_cache(context):
            raise ConfigError("redis.addr", "required by storage.cache.blobdescriptor: redis")
        return None
    host, port = _server(redis)
    db = redis.get("db")
    if db is None:
        db = 0
    if db < 0:
        raise ConfigError("redis.db", "must not be negative")
    defaults = RedisConfig("", 0)
    return RedisConfig(
        host=host,
        port=port,
        # As in Go, an empty string is none.
        username=redis.get("username") or None,
        password=redis.get("password") or None,
        db=db,
        dial_timeout=_timeout("redis.dialtimeout", redis.get("dialtimeout"), defaults.dial_timeout),
        read_timeout=_timeout("redis.readtimeout", redis.get("readtimeout"), defaults.read_timeout),
        write_timeout=_timeout(
            "redis.writetimeout", redis.get("writetimeout"), defaults.write_timeout
        ),
        pool=_pool(redis),
        tls=_tls(redis.get("tls")),
    )


SECTION = Section("redis", _SCHEMA, build=_build, attribute="redis")
