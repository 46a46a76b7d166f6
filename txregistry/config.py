# -*- test-case-name: tests.test_config -*-
"""
The registry's configuration: Distribution's YAML format, with ``REGISTRY_*``
environment overrides, checked against a schema and turned into typed
objects.  Every mistake becomes a L{ConfigError} naming the key.

Sections of Distribution's format that txregistry does not implement yet are
treated by what ignoring them would do: where ignoring would weaken security
or lose data (C{notifications}, C{proxy}, Let's Encrypt, a Redis cache)
they stop start-up; where it only forgoes a convenience (C{health},
C{redis}, C{http.debug}, upload purging) they are logged as ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

# The configuration used when none is given: filesystem storage under
# ./registry-data, listening on port 5000.
EMBEDDED_DEFAULT = """\
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: ./registry-data
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: false
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
"""


class ConfigError(Exception):
    """
    A configuration mistake.

    @ivar key: the dotted key (or environment variable) at fault.
    @ivar problem: what is wrong with it.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


# -- schema -------------------------------------------------------------------


@dataclass(frozen=True)
class _Unsupported:
    """A key of Distribution's format that txregistry refuses, and why."""

    reason: str


@dataclass(frozen=True)
class _Ignored:
    """A key of Distribution's format that txregistry accepts and ignores."""

    reason: str


class _AnyMapping:
    """A mapping whose keys are free (driver parameters, log fields)."""


class _Duration:
    """Go's duration strings ("10s", "1h30m") or a number of nanoseconds."""


class _StringList:
    """A list of strings, or one string."""


class _MiddlewareList:
    """A list of middleware entries (C{name}, C{options}, C{disabled})."""


_NOT_YET = "is not supported by txregistry yet"
_Schema = dict[str, Any]

_SCHEMA: _Schema = {
    "version": (str, float),
    "log": {
        "level": str,
        "formatter": str,
        "fields": _AnyMapping,
        "reportcaller": bool,
        "hooks": _Ignored("log hooks (mail) are not implemented; ignored"),
        "accesslog": {"disabled": bool},
    },
    "loglevel": str,
    "storage": {
        # The driver's own key is checked by the driver's factory.
        "delete": {"enabled": bool},
        "maintenance": {
            "uploadpurging": _Ignored("upload purging is not implemented yet; ignored"),
            "readonly": {"enabled": bool},
        },
        "cache": {"blobdescriptor": str, "blobdescriptorsize": int},
        "redirect": {"disable": bool},
        "tag": {"concurrencylimit": int},
    },
    "http": {
        "addr": str,
        "net": str,
        "prefix": str,
        "host": str,
        "secret": str,
        "relativeurls": bool,
        "draintimeout": _Duration,
        "headers": _AnyMapping,
        "http2": {"disabled": bool},
        "h2c": _Ignored("h2c is not implemented; HTTP/1.1 is served"),
        "tls": {
            "certificate": str,
            "key": str,
            "clientcas": _StringList,
            "minimumtls": str,
            "ciphersuites": _StringList,
            "letsencrypt": _Unsupported(
                f"Let's Encrypt {_NOT_YET}; give http.tls.certificate and http.tls.key"
            ),
        },
        "debug": _Ignored("the debug server is not implemented yet; ignored"),
    },
    "auth": _AnyMapping,
    "middleware": {
        "storage": _MiddlewareList,
        "registry": _Unsupported(f"registry middleware {_NOT_YET}"),
        "repository": _Unsupported(f"repository middleware {_NOT_YET}"),
    },
    "notifications": _Unsupported(f"notifications {_NOT_YET}; events would be lost"),
    "redis": _Ignored("the Redis cache is not implemented yet; ignored"),
    "health": _Ignored("health checks are not implemented yet; ignored"),
    "proxy": _Unsupported(f"the pull-through cache {_NOT_YET}"),
    "validation": {
        "enabled": _Ignored("validation.enabled is deprecated; use validation.disabled"),
        "disabled": bool,
        "manifests": {"urls": {"allow": _StringList, "deny": _StringList}},
    },
    "catalog": {"maxentries": int},
}

_STORAGE_SPECIAL = set(_SCHEMA["storage"])


def _type_name(kind: Any) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", float: "a number"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    if kind is _AnyMapping:
        return "a mapping"
    if kind is _Duration:
        return 'a duration such as "10s"'
    if kind is _StringList:
        return "a list of strings"
    if kind is _MiddlewareList:
        return "a list of middleware entries"
    return names.get(kind, str(kind))


def check_parameters(section: str, parameters: Any, spec: Mapping[str, Any]) -> None:
    """
    Check a flat mapping of parameters (a driver's, say) against C{spec},
    a mapping of key to Python type.

    @raise ConfigError: naming C{section.key} for an unknown key or a value of
        the wrong type.
    """
    if parameters is None:
        return
    if not isinstance(parameters, Mapping):
        raise ConfigError(section, "must be a mapping")
    for key, value in parameters.items():
        if key not in spec:
            raise ConfigError(f"{section}.{key}", "unknown key")
        if not _is_instance(value, spec[key]):
            raise ConfigError(f"{section}.{key}", f"must be {_type_name(spec[key])}")


def _is_instance(value: Any, kind: Any) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    for one in kinds:
        if one is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if one is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if one in (str, bool) and isinstance(value, one):
            return True
        if one is _AnyMapping and isinstance(value, Mapping):
            return True
        if (
            one is _StringList
            and isinstance(value, list)
            and all(isinstance(item, str) for item in value)
        ):
            return True
        if one is _MiddlewareList and isinstance(value, list):
            return True
        if one is _Duration and (
            (isinstance(value, int) and not isinstance(value, bool))
            or (isinstance(value, str) and _DURATION.fullmatch(value) is not None)
        ):
            return True
    return False


_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")


def _check(path: str, value: Any, schema: _Schema, warn: Callable[[str], None]) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise ConfigError(path or "<top level>", "must be a mapping")
    for key, child in value.items():
        key_path = f"{path}.{key}" if path else str(key)
        if not isinstance(key, str):
            raise ConfigError(key_path, "keys must be strings")
        if path == "storage" and key not in _STORAGE_SPECIAL:
            continue  # a driver's section; its factory checks it
        if key not in schema:
            raise ConfigError(key_path, "unknown key")
        kind = schema[key]
        if isinstance(kind, _Unsupported):
            raise ConfigError(key_path, kind.reason)
        if isinstance(kind, _Ignored):
            warn(f"{key_path}: {kind.reason}")
        elif isinstance(kind, dict):
            _check(key_path, child, kind, warn)
        elif kind is str and isinstance(child, (int, float, bool)):
            # Go's YAML decoder reads any scalar into a string field
            # (secret: 12345); so do we.
            value[key] = str(child).lower() if isinstance(child, bool) else str(child)
        elif child is not None and not _is_instance(child, kind):
            raise ConfigError(key_path, f"must be {_type_name(kind)}")


# -- environment overrides ------------------------------------------------------

# Names the config file, as for Distribution; not an override.
CONFIGURATION_PATH_VARIABLE = "REGISTRY_CONFIGURATION_PATH"


def apply_environment(document: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """
    Apply C{REGISTRY_*} overrides, as Distribution does: the variable's name
    below C{REGISTRY_} is the key's path joined with underscores,
    case-insensitive (C{REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY} sets
    C{storage.filesystem.rootdirectory}), and its value is read as YAML.

    @raise ConfigError: naming the variable when it matches no key.
    """
    for variable in sorted(environ):
        if not variable.startswith("REGISTRY_") or variable == CONFIGURATION_PATH_VARIABLE:
            continue
        parts = variable[len("REGISTRY_") :].lower().split("_")
        if not all(parts):
            raise ConfigError(variable, "is not a configuration key")
        try:
            value = yaml.safe_load(environ[variable])
        except yaml.YAMLError as error:
            raise ConfigError(variable, f"is not valid YAML: {error}") from None
        target: dict[str, Any] = document
        schema: Any = _SCHEMA
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            # Below a refused or ignored key anything goes here: the checks
            # of the whole document refuse or warn as for the file.
            free = (
                schema is None
                or schema is _AnyMapping
                or isinstance(schema, (_Unsupported, _Ignored))
                or (schema is _SCHEMA["storage"] and part not in _STORAGE_SPECIAL)
            )
            if not free and (not isinstance(schema, dict) or part not in schema):
                raise ConfigError(variable, "matches no configuration key")
            next_schema = None if free else schema[part]
            if free and schema is _SCHEMA["storage"]:
                next_schema = _AnyMapping  # a driver's parameters
            if last:
                target[part] = value
            else:
                existing = target.get(part)
                if not isinstance(existing, dict):
                    existing = target[part] = {}
                target = existing
            schema = next_schema
    return document


# -- typed configuration --------------------------------------------------------


@dataclass(frozen=True)
class LogConfig:
    """The C{log} section."""

    level: str = "info"
    formatter: str = "text"
    fields: Mapping[str, Any] = field(default_factory=dict)
    accesslog_disabled: bool = False


@dataclass(frozen=True)
class StorageConfig:
    """The C{storage} section: the driver's name and parameters, and the options."""

    driver: str
    parameters: Mapping[str, Any]
    delete_enabled: bool = False
    readonly: bool = False
    redirect_disabled: bool = False
    blob_descriptor_cache: str | None = None
    blob_descriptor_cache_size: int = 10000


# http.tls.minimumtls: Distribution's names, and its default.
TLS_VERSIONS = ("tls1.0", "tls1.1", "tls1.2", "tls1.3")
DEFAULT_MINIMUM_TLS = "tls1.2"

# http.tls.ciphersuites: the names Distribution accepts (Go's), each with
# OpenSSL's name for the same suite.  TLS 1.3 suites are None: Go always
# offers all three, whatever the list says, and so does OpenSSL.
TLS_CIPHER_SUITES: Mapping[str, str | None] = {
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
}

# The suites Distribution 2.8 restricts TLS 1.2 and below to by default.
DEFAULT_TLS_CIPHER_SUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_AES_128_GCM_SHA256",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_256_GCM_SHA384",
)


@dataclass(frozen=True)
class TLSConfig:
    """
    The C{http.tls} section: serve HTTPS with this certificate and key.
    The files are only named here; they are read, and checked, when the
    service is built (see L{txregistry.tls}).

    @ivar certificate: a PEM file: the server's certificate, then any
        intermediate certificates of its chain.
    @ivar key: a PEM file: the certificate's private key, unencrypted.
    @ivar client_cas: PEM files of the CAs that sign client certificates;
        when given, clients must present one (mutual TLS).
    @ivar minimum_version: one of L{TLS_VERSIONS}.
    @ivar cipher_suites: names from L{TLS_CIPHER_SUITES}, Go's.
    """

    certificate: str
    key: str
    client_cas: tuple[str, ...] = ()
    minimum_version: str = DEFAULT_MINIMUM_TLS
    cipher_suites: tuple[str, ...] = DEFAULT_TLS_CIPHER_SUITES


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


@dataclass(frozen=True)
class ValidationConfig:
    """The C{validation} section: which foreign layer URLs manifests may carry."""

    disabled: bool = False
    url_allow: tuple[str, ...] = ()
    url_deny: tuple[str, ...] = ()


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


@dataclass(frozen=True)
class AuthConfig:
    """
    The C{auth} section: the access controller it names and its options.
    Whether the name is installed and the options suit it is for the plugin
    to say (see L{txregistry.service}).
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    """A whole, checked configuration."""

    log: LogConfig
    storage: StorageConfig
    http: HTTPConfig
    catalog_max_entries: int = 1000
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    middleware: MiddlewareConfig = field(default_factory=MiddlewareConfig)
    auth: AuthConfig | None = None
    warnings: tuple[str, ...] = ()


_LEVELS = ("error", "warn", "warning", "info", "debug", "trace", "fatal", "panic")
_FORMATTERS = ("text", "json", "logstash")


def parse_duration(key: str, value: Any) -> float:
    """Seconds in a Go duration string, or in a number of nanoseconds."""
    if isinstance(value, int):
        return value / 1e9
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    if not isinstance(value, str) or not _DURATION.fullmatch(value):
        raise ConfigError(key, 'must be a duration such as "10s"')
    return sum(
        float(number) * units[unit]
        for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", value)
    )


def _headers(value: Mapping[str, Any]) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, values in value.items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"http.headers.{name}", "must be a list of strings")
        headers[str(name)] = values
    return headers


def _section(document: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = document.get(key)
    return value if isinstance(value, Mapping) else {}


_ENTRY_KEYS = ("name", "options", "disabled")


def _middleware_entries(section: str, entries: list[Any] | None) -> tuple[MiddlewareEntry, ...]:
    """The typed entries of the middleware list at C{section}."""
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


def build_config(document: Any, known_drivers: Mapping[str, Any] | None = None) -> Config:
    """
    Check a parsed YAML document and build the typed L{Config}.

    @param known_drivers: the storage driver names that may be chosen; when
        given, any other driver name is an error.
    @raise ConfigError: naming the key for every mistake.
    """
    warnings: list[str] = []
    if document is None:
        raise ConfigError("<top level>", "the configuration is empty")
    _check("", document, _SCHEMA, warnings.append)
    version = document.get("version")
    if version is None:
        raise ConfigError("version", "missing; Distribution's format needs version: 0.1")
    if str(version) != "0.1":
        raise ConfigError("version", f"unsupported version {version!r}; expected 0.1")

    log = _section(document, "log")
    level = str(log.get("level", document.get("loglevel", "info"))).lower()
    if level not in _LEVELS:
        raise ConfigError("log.level", f"must be one of {', '.join(_LEVELS[:5])}")
    formatter = log.get("formatter", "text")
    if formatter not in _FORMATTERS:
        raise ConfigError("log.formatter", f"must be one of {', '.join(_FORMATTERS)}")
    log_config = LogConfig(
        level=level,
        formatter=formatter,
        fields=dict(log.get("fields") or {}),
        accesslog_disabled=bool(_section(log, "accesslog").get("disabled", False)),
    )

    storage = _section(document, "storage")
    drivers = [key for key in storage if key not in _STORAGE_SPECIAL]
    if not drivers:
        raise ConfigError("storage", "names no storage driver")
    if len(drivers) > 1:
        raise ConfigError("storage", f"names more than one driver: {', '.join(drivers)}")
    driver = drivers[0]
    if known_drivers is not None and driver not in known_drivers:
        raise ConfigError(
            f"storage.{driver}",
            f"unknown storage driver (installed: {', '.join(sorted(known_drivers))})",
        )
    parameters = storage[driver]
    if parameters is not None and not isinstance(parameters, Mapping):
        raise ConfigError(f"storage.{driver}", "must be a mapping of driver parameters")
    cache_section = _section(storage, "cache")
    cache = cache_section.get("blobdescriptor")
    cache_size = cache_section.get("blobdescriptorsize", 10000)
    if cache_size <= 0:
        raise ConfigError("storage.cache.blobdescriptorsize", "must be a positive integer")
    if cache not in (None, "inmemory"):
        raise ConfigError(
            "storage.cache.blobdescriptor",
            f"{cache!r} is not supported (txregistry has: inmemory)",
        )
    maintenance = _section(storage, "maintenance")
    storage_config = StorageConfig(
        driver=driver,
        parameters=dict(parameters or {}),
        delete_enabled=bool(_section(storage, "delete").get("enabled", False)),
        readonly=bool(_section(maintenance, "readonly").get("enabled", False)),
        redirect_disabled=bool(_section(storage, "redirect").get("disable", False)),
        blob_descriptor_cache=cache,
        blob_descriptor_cache_size=cache_size,
    )

    http = _section(document, "http")
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
    http_config = HTTPConfig(
        addr=addr,
        endpoint=endpoint_description(addr, net),
        net=net,
        prefix=prefix if prefix.endswith("/") else prefix + "/",
        host=host.rstrip("/") if host else None,
        secret=http.get("secret"),
        relative_urls=bool(http.get("relativeurls", False)),
        headers=_headers(http.get("headers") or {}),
        drain_timeout=parse_duration("http.draintimeout", http.get("draintimeout", 0)),
        tls=_tls(http.get("tls")),
    )
    max_entries = _section(document, "catalog").get("maxentries", 1000)
    if max_entries <= 0:
        raise ConfigError("catalog.maxentries", "must be a positive integer")
    validation = _section(document, "validation")
    urls = _section(_section(validation, "manifests"), "urls")
    for key in ("allow", "deny"):
        for index, pattern in enumerate(urls.get(key) or []):
            try:
                re.compile(pattern)
            except re.error as error:
                raise ConfigError(
                    f"validation.manifests.urls.{key}[{index}]",
                    f"is not a regular expression: {error}",
                ) from None
    middleware = _section(document, "middleware")
    return Config(
        log=log_config,
        storage=storage_config,
        http=http_config,
        catalog_max_entries=max_entries,
        validation=ValidationConfig(
            disabled=bool(validation.get("disabled", False)),
            url_allow=tuple(urls.get("allow") or ()),
            url_deny=tuple(urls.get("deny") or ()),
        ),
        middleware=MiddlewareConfig(
            storage=_middleware_entries("middleware.storage", middleware.get("storage"))
        ),
        auth=_auth(document.get("auth")),
        warnings=tuple(warnings),
    )


def _tls(section: Mapping[str, Any] | None) -> TLSConfig | None:
    """
    The C{http.tls} section, typed.  One with no value set serves plain
    HTTP, as for Distribution; otherwise a certificate and key are needed.
    """
    if not section or not any(section.values()):
        return None
    certificate = section.get("certificate")
    if not certificate:
        raise ConfigError("http.tls.certificate", "missing; TLS needs a certificate and its key")
    key = section.get("key")
    if not key:
        raise ConfigError("http.tls.key", "missing; TLS needs the certificate's private key")
    for index, path in enumerate(section.get("clientcas") or []):
        if not path:
            raise ConfigError(f"http.tls.clientcas[{index}]", "must name a file of CA certificates")
    minimum = section.get("minimumtls") or DEFAULT_MINIMUM_TLS
    if minimum not in TLS_VERSIONS:
        raise ConfigError(
            "http.tls.minimumtls", f"{minimum!r} is not one of {', '.join(TLS_VERSIONS)}"
        )
    suites = tuple(section.get("ciphersuites") or DEFAULT_TLS_CIPHER_SUITES)
    for index, suite in enumerate(suites):
        if suite not in TLS_CIPHER_SUITES:
            raise ConfigError(
                f"http.tls.ciphersuites[{index}]",
                f"unknown cipher suite {suite!r} "
                "(Go's names, such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)",
            )
    return TLSConfig(
        certificate=certificate,
        key=key,
        client_cas=tuple(section.get("clientcas") or ()),
        minimum_version=minimum,
        cipher_suites=suites,
    )


def _auth(section: Mapping[str, Any] | None) -> AuthConfig | None:
    """The one access controller the C{auth} section names, if any."""
    if not section:
        return None
    if len(section) > 1:
        raise ConfigError("auth", f"names more than one access controller: {', '.join(section)}")
    name, options = next(iter(section.items()))
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"auth.{name}", "must be a mapping of options")
    return AuthConfig(str(name), dict(options or {}))


def load_config(
    text: str | None,
    environ: Mapping[str, str] | None = None,
    known_drivers: Mapping[str, Any] | None = None,
    source: str = "configuration",
) -> Config:
    """
    Parse YAML C{text} (the embedded default when L{None}), apply the
    environment's C{REGISTRY_*} overrides and build the L{Config}.

    @raise ConfigError: for YAML that does not parse, and every mistake
        L{build_config} finds.
    """
    try:
        document = yaml.safe_load(EMBEDDED_DEFAULT if text is None else text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(source, f"is not valid YAML{where}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(source, "must be a YAML mapping")
    document = apply_environment(document, os.environ if environ is None else environ)
    return build_config(document, known_drivers)
