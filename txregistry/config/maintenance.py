# -*- test-case-name: tests.test_config -*-
"""
The storage maintenance the server runs by itself, part of the C{storage}
section: C{storage.maintenance.uploadpurging}, as Distribution's, and
C{storage.gc}, txregistry's own (garbage collection on a schedule; see
L{txregistry.registry.gc}).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from txregistry.config.core import ConfigError, Duration, as_mapping, parse_duration


@dataclass(frozen=True)
class UploadPurgingConfig:
    """
    C{storage.maintenance.uploadpurging}: on unless disabled, as in
    Distribution, with its defaults.

    @ivar age: seconds: uploads started longer ago are purged.
    @ivar interval: seconds between purges.
    """

    enabled: bool = True
    age: float = 168 * 3600.0
    interval: float = 24 * 3600.0
    dry_run: bool = False


@dataclass(frozen=True)
class GCConfig:
    """
    C{storage.gc}: garbage collection in the server, off unless enabled.

    @ivar interval: seconds between collections.
    @ivar min_age: seconds: nothing written more recently is deleted.
    """

    enabled: bool = False
    interval: float = 24 * 3600.0
    min_age: float = 3600.0
    delete_untagged: bool = False
    dry_run: bool = False


UPLOAD_PURGING_SCHEMA = {"enabled": bool, "age": Duration, "interval": Duration, "dryrun": bool}
GC_SCHEMA = {
    "enabled": bool,
    "interval": Duration,
    "minage": Duration,
    "deleteuntagged": bool,
    "dryrun": bool,
}


def _positive(key: str, value: Any, default: float) -> float:
    seconds = default if value is None else parse_duration(key, value)
    if seconds <= 0:
        raise ConfigError(key, "must be a positive duration")
    return seconds


def build_upload_purging(value: Any) -> UploadPurgingConfig:
    """The typed C{storage.maintenance.uploadpurging}, checked against its schema already."""
    section = as_mapping(value)
    key = "storage.maintenance.uploadpurging"
    defaults = UploadPurgingConfig()
    return UploadPurgingConfig(
        enabled=bool(section.get("enabled", defaults.enabled)),
        age=_positive(f"{key}.age", section.get("age"), defaults.age),
        interval=_positive(f"{key}.interval", section.get("interval"), defaults.interval),
        dry_run=bool(section.get("dryrun", defaults.dry_run)),
    )


def build_gc(value: Any) -> GCConfig:
    """The typed C{storage.gc}, checked against its schema already."""
    section = as_mapping(value)
    defaults = GCConfig()
    min_age = section.get("minage")
    return GCConfig(
        enabled=bool(section.get("enabled", defaults.enabled)),
        interval=_positive("storage.gc.interval", section.get("interval"), defaults.interval),
        min_age=defaults.min_age
        if min_age is None
        else parse_duration("storage.gc.minage", min_age),
        delete_untagged=bool(section.get("deleteuntagged", defaults.delete_untagged)),
        dry_run=bool(section.get("dryrun", defaults.dry_run)),
    )
