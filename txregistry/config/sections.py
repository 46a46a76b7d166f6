# -*- test-case-name: tests.test_config -*-
"""
The registered sections, and what they make together: the top-level
schema, the typed L{Config}, and the functions that load and build it.

Adding a section is adding its module (see L{txregistry.config.core.Section})
and its entry in L{SECTIONS}; one whose value the service reads also gets
the attribute of L{Config} its C{attribute} names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import txregistry.config.auth as auth
import txregistry.config.catalog as catalog
import txregistry.config.health as health
import txregistry.config.http as http
import txregistry.config.log as log
import txregistry.config.loglevel as loglevel
import txregistry.config.middleware as middleware
import txregistry.config.notifications as notifications
import txregistry.config.proxy as proxy
import txregistry.config.redis as redis
import txregistry.config.storage as storage
import txregistry.config.validation as validation
import txregistry.config.version as version
from txregistry.config.auth import AuthConfig
from txregistry.config.core import (
    BuildContext,
    ConfigError,
    Schema,
    Section,
    apply_overrides,
    check,
    parse_yaml,
)
from txregistry.config.health import HealthConfig
from txregistry.config.http import HTTPConfig
from txregistry.config.log import LogConfig
from txregistry.config.middleware import MiddlewareConfig
from txregistry.config.notifications import NotificationsConfig
from txregistry.config.proxy import ProxyConfig
from txregistry.config.redis import RedisConfig
from txregistry.config.storage import StorageConfig
from txregistry.config.validation import ValidationConfig

# In the order they are built, which is the order their mistakes are found.
SECTIONS: tuple[Section, ...] = (
    version.SECTION,
    log.SECTION,
    loglevel.SECTION,
    storage.SECTION,
    http.SECTION,
    catalog.SECTION,
    validation.SECTION,
    middleware.SECTION,
    auth.SECTION,
    notifications.SECTION,
    redis.SECTION,
    health.SECTION,
    proxy.SECTION,
)

SCHEMA: Schema = {section.key: section.schema for section in SECTIONS}

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
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    redis: RedisConfig | None = None
    health: HealthConfig = field(default_factory=HealthConfig)
    proxy: ProxyConfig | None = None
    warnings: tuple[str, ...] = ()


def apply_environment(document: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """
    Apply C{REGISTRY_*} overrides, as Distribution does: the variable's name
    below C{REGISTRY_} is the key's path joined with underscores,
    case-insensitive (C{REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY} sets
    C{storage.filesystem.rootdirectory}), and its value is read as YAML.

    @raise ConfigError: naming the variable when it matches no key.
    """
    return apply_overrides(document, environ, SCHEMA)


def build_config(
    document: Any,
    known_drivers: Mapping[str, Any] | None = None,
    *,
    known_caches: Mapping[str, Any] | None = None,
) -> Config:
    """
    Check a parsed YAML document and build the typed L{Config}.

    @param known_drivers: the storage driver names that may be chosen; when
        given, any other driver name is an error.
    @param known_caches: the cache names C{storage.cache.blobdescriptor} may
        choose; when given, any other name is an error.
    @raise ConfigError: naming the key for every mistake.
    """
    warnings: list[str] = []
    if document is None:
        raise ConfigError("<top level>", "the configuration is empty")
    check("", document, SCHEMA, warnings.append)
    context = BuildContext(
        document, known_drivers=known_drivers, known_caches=known_caches, warnings=warnings
    )
    values: dict[str, Any] = {}
    for section in SECTIONS:
        if section.build is None:
            continue
        value = section.build(document.get(section.key), context)
        if section.attribute is not None:
            values[section.attribute] = value
    return Config(**values, warnings=tuple(warnings))


def load_config(
    text: str | None,
    environ: Mapping[str, str] | None = None,
    known_drivers: Mapping[str, Any] | None = None,
    source: str = "configuration",
    *,
    known_caches: Mapping[str, Any] | None = None,
) -> Config:
    """
    Parse YAML C{text} (the embedded default when L{None}), apply the
    environment's C{REGISTRY_*} overrides and build the L{Config}; see
    L{build_config} for C{known_drivers} and C{known_caches}.

    @raise ConfigError: for YAML that does not parse, and every mistake
        L{build_config} finds.
    """
    document = parse_yaml(EMBEDDED_DEFAULT if text is None else text, source)
    document = apply_environment(document, os.environ if environ is None else environ)
    return build_config(document, known_drivers, known_caches=known_caches)
