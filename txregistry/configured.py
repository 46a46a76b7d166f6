# -*- test-case-name: tests.test_config,tests.test_gc_command -*-
"""
What a configuration file makes: the configuration itself, and the storage
it names.  The server and the maintenance commands (C{garbage-collect},
C{check}) share them; this module imports no web server, so a command
starts in a third less time.
"""

from __future__ import annotations

import os

from txregistry.cache.plugins import cache_factories
from txregistry.config import CONFIGURATION_PATH_VARIABLE, Config, ConfigError, load_config
from txregistry.drivers.base import ValidatingDriver
from txregistry.drivers.plugins import driver_factories
from txregistry.middleware.plugins import storage_middleware_factories
from txregistry.middleware.storage import apply_storage_middleware


def read_config(path: str | None) -> Config:
    """The configuration from C{path}, the environment, or the default."""
    path = path or os.environ.get(CONFIGURATION_PATH_VARIABLE)
    text = None
    if path is not None:
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except OSError as error:
            raise ConfigError(
                path, f"cannot read the configuration file: {error.strerror}"
            ) from None
        except UnicodeDecodeError as error:
            raise ConfigError(
                path, f"the configuration file is not UTF-8 text: {error.reason}"
            ) from None
    return load_config(
        text,
        known_drivers=driver_factories(),
        known_caches=cache_factories(),
        source=path or "configuration",
    )


def build_driver(config: Config) -> ValidatingDriver:
    """
    The storage C{config} names: the driver plugin, wrapped in the storage
    middleware in order, and in the validating wrapper.

    @raise ConfigError: naming the key, for parameters the driver or a
        middleware refuses.
    """
    factory = driver_factories()[config.storage.driver]
    return ValidatingDriver(
        apply_storage_middleware(
            factory.create(config.storage.parameters),
            config.middleware.storage,
            storage_middleware_factories(),
        )
    )
