# -*- test-case-name: tests.test_config -*-
"""
The registry's configuration: Distribution's YAML format, with ``REGISTRY_*``
environment overrides, checked against a schema and turned into typed
objects.  Every mistake becomes a L{ConfigError} naming the key.

Each top-level section has a module of its own, holding its schema, its
typed value and how to build it; L{txregistry.config.core} does what every
section needs (YAML, overrides, checking, errors) and
L{txregistry.config.sections} registers the sections and builds L{Config}.
This module only gathers the names the rest of txregistry uses.

Sections of Distribution's format that txregistry does not implement yet are
treated by what ignoring them would do: where ignoring would weaken security
or lose data (Let's Encrypt, registry middleware) they stop start-up; where
it only forgoes a convenience (C{log.hooks}) they are logged as ignored.
"""

from __future__ import annotations

from txregistry.config.auth import AuthConfig
from txregistry.config.core import (
    CONFIGURATION_PATH_VARIABLE,
    ConfigError,
    check_parameters,
    parse_duration,
)
from txregistry.config.http import HTTPConfig, endpoint_description
from txregistry.config.log import LogConfig
from txregistry.config.middleware import MiddlewareConfig, MiddlewareEntry
from txregistry.config.proxy import ProxyConfig
from txregistry.config.redis import RedisConfig
from txregistry.config.sections import (
    EMBEDDED_DEFAULT,
    Config,
    apply_environment,
    build_config,
    load_config,
)
from txregistry.config.storage import StorageConfig
from txregistry.config.tls import (
    DEFAULT_MINIMUM_TLS,
    DEFAULT_TLS_CIPHER_SUITES,
    TLS_CIPHER_SUITES,
    TLS_VERSIONS,
    TLSConfig,
)
from txregistry.config.validation import ValidationConfig

__all__ = [
    "CONFIGURATION_PATH_VARIABLE",
    "DEFAULT_MINIMUM_TLS",
    "DEFAULT_TLS_CIPHER_SUITES",
    "EMBEDDED_DEFAULT",
    "TLS_CIPHER_SUITES",
    "TLS_VERSIONS",
    "AuthConfig",
    "Config",
    "ConfigError",
    "HTTPConfig",
    "LogConfig",
    "MiddlewareConfig",
    "MiddlewareEntry",
    "ProxyConfig",
    "RedisConfig",
    "StorageConfig",
    "TLSConfig",
    "ValidationConfig",
    "apply_environment",
    "build_config",
    "check_parameters",
    "endpoint_description",
    "load_config",
    "parse_duration",
]
