# -*- test-case-name: tests.test_config -*-
"""
The C{storage} section: the one storage driver and its parameters, and the
options that apply whichever driver it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from txregistry.config.core import (
    BuildContext,
    ConfigError,
    OpenSchema,
    Section,
    as_mapping,
)
from txregistry.config.maintenance import (
    GC_SCHEMA,
    UPLOAD_PURGING_SCHEMA,
    GCConfig,
    UploadPurgingConfig,
    build_gc,
    build_upload_purging,
)


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
    upload_purging: UploadPurgingConfig = field(default_factory=UploadPurgingConfig)
    gc: GCConfig = field(default_factory=GCConfig)


# Any other key names the driver; the driver's factory checks its section.
_SCHEMA = OpenSchema(
    {
        "delete": {"enabled": bool},
        "maintenance": {
            "uploadpurging": UPLOAD_PURGING_SCHEMA,
            "readonly": {"enabled": bool},
        },
        "cache": {"blobdescriptor": str, "blobdescriptorsize": int},
        "redirect": {"disable": bool},
        "tag": {"concurrencylimit": int},
        "gc": GC_SCHEMA,
    }
)


def _build(value: Any, context: BuildContext) -> StorageConfig:
    """
    The typed C{storage} section.

    @raise ConfigError: unless exactly one driver, of the known ones, is
        named; for a blob descriptor cache that is not installed.
    """
    storage = as_mapping(value)
    drivers = [key for key in storage if key not in _SCHEMA]
    if not drivers:
        raise ConfigError("storage", "names no storage driver")
    if len(drivers) > 1:
        raise ConfigError("storage", f"names more than one driver: {', '.join(drivers)}")
    driver = drivers[0]
    known_drivers = context.known_drivers
    if known_drivers is not None and driver not in known_drivers:
        raise ConfigError(
            f"storage.{driver}",
            f"unknown storage driver (installed: {', '.join(sorted(known_drivers))})",
        )
    parameters = storage[driver]
    if parameters is not None and not isinstance(parameters, Mapping):
        raise ConfigError(f"storage.{driver}", "must be a mapping of driver parameters")
    cache_section = as_mapping(storage.get("cache"))
    cache = cache_section.get("blobdescriptor")
    cache_size = cache_section.get("blobdescriptorsize")
    if cache_size is None:  # not set, or set to nothing
        cache_size = 10000
    if cache_size <= 0:
        raise ConfigError("storage.cache.blobdescriptorsize", "must be a positive integer")
    if cache == "":
        raise ConfigError("storage.cache.blobdescriptor", "must not be empty; leave it out instead")
    known_caches = context.known_caches
    if cache is not None and known_caches is not None and cache not in known_caches:
        raise ConfigError(
            "storage.cache.blobdescriptor",
            f"unknown cache {cache!r} (installed: {', '.join(sorted(known_caches))})",
        )
    maintenance = as_mapping(storage.get("maintenance"))
    return StorageConfig(
        driver=driver,
        parameters=dict(parameters or {}),
        delete_enabled=bool(as_mapping(storage.get("delete")).get("enabled", False)),
        readonly=bool(as_mapping(maintenance.get("readonly")).get("enabled", False)),
        redirect_disabled=bool(as_mapping(storage.get("redirect")).get("disable", False)),
        blob_descriptor_cache=cache,
        blob_descriptor_cache_size=cache_size,
        upload_purging=build_upload_purging(maintenance.get("uploadpurging")),
        gc=build_gc(storage.get("gc")),
    )


SECTION = Section("storage", _SCHEMA, build=_build, attribute="storage")
