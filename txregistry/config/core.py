# -*- test-case-name: tests.test_config -*-
"""
What every section of the configuration uses the same way: reading YAML,
applying the C{REGISTRY_*} environment overrides, checking a document
against a schema, and naming the key at fault in a L{ConfigError}.

A section (see L{Section}) gives its top-level key, its schema and how to
build its typed value; L{txregistry.config.sections} registers them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml


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

# A schema maps each allowed key to its kind: a Python type (or a tuple of
# them), one of the marker classes below, an Unsupported or Ignored, or a
# nested schema.
Schema = dict[str, Any]


class OpenSchema(dict[str, Any]):
    """
    A schema whose unlisted keys are free: someone else checks them (the
    storage driver's own key, by the driver's factory).
    """


@dataclass(frozen=True)
class Unsupported:
    """A key of Distribution's format that txregistry refuses, and why."""

    reason: str


@dataclass(frozen=True)
class Ignored:
    """A key of Distribution's format that txregistry accepts and ignores."""

    reason: str


class AnyMapping:
    """A mapping whose keys are free (driver parameters, log fields)."""


class Duration:
    """Go's duration strings ("10s", "1h30m") or a number of nanoseconds."""


class StringList:
    """A list of strings, or one string."""


class MiddlewareList:
    """A list of middleware entries (C{name}, C{options}, C{disabled})."""


# The reason of an Unsupported key, for what Distribution has and we lack.
NOT_YET = "is not supported by txregistry yet"

_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")


def _type_name(kind: Any) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", float: "a number"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    if kind is AnyMapping:
        return "a mapping"
    if kind is Duration:
        return 'a duration such as "10s"'
    if kind is StringList:
        return "a list of strings"
    if kind is MiddlewareList:
        return "a list of middleware entries"
    return names.get(kind, str(kind))


def _is_instance(value: Any, kind: Any) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    for one in kinds:
        if one is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if one is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if one in (str, bool) and isinstance(value, one):
            return True
        if one is AnyMapping and isinstance(value, Mapping):
            return True
        if (
            one is StringList
            and isinstance(value, list)
            and all(isinstance(item, str) for item in value)
        ):
            return True
        if one is MiddlewareList and isinstance(value, list):
            return True
        if one is Duration and (
            (isinstance(value, int) and not isinstance(value, bool))
            or (isinstance(value, str) and _DURATION.fullmatch(value) is not None)
        ):
            return True
    return False


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


def check(path: str, value: Any, schema: Schema, warn: Callable[[str], None]) -> None:
    """
    Check C{value}, found at the dotted C{path}, against C{schema}; call
    C{warn} with a line for every ignored key.  Scalars given for string
    keys are turned into their text, in place.

    @raise ConfigError: naming the key, for an unknown or refused key or a
        value of the wrong kind.
    """
    if value is None:
        return
    if not isinstance(value, dict):
        raise ConfigError(path or "<top level>", "must be a mapping")
    for key, child in value.items():
        key_path = f"{path}.{key}" if path else str(key)
        if not isinstance(key, str):
            raise ConfigError(key_path, "keys must be strings")
        if isinstance(schema, OpenSchema) and key not in schema:
            continue
        if key not in schema:
            raise ConfigError(key_path, "unknown key")
        kind = schema[key]
        if isinstance(kind, Unsupported):
            raise ConfigError(key_path, kind.reason)
        if isinstance(kind, Ignored):
            warn(f"{key_path}: {kind.reason}")
        elif isinstance(kind, dict):
            check(key_path, child, kind, warn)
        elif kind is str and isinstance(child, (int, float, bool)):
            # Go's YAML decoder reads any scalar into a string field
            # (secret: 12345); so do we.
            value[key] = str(child).lower() if isinstance(child, bool) else str(child)
        elif child is not None and not _is_instance(child, kind):
            raise ConfigError(key_path, f"must be {_type_name(kind)}")


# Go's durations are 64-bit counts of nanoseconds: about 292 years at most.
_LONGEST_DURATION = (2**63 - 1) / 1e9


def parse_duration(key: str, value: Any) -> float:
    """
    Seconds in a Go duration string, or in a number of nanoseconds.

    @raise ConfigError: naming C{key}, for anything else, and for a duration
        longer than Go's can be.
    """
    if isinstance(value, int):
        # Checked before dividing: a float holds no integer past 10**308.
        seconds = value / 1e9 if abs(value) < 2**63 else math.inf
    elif isinstance(value, str) and _DURATION.fullmatch(value):
        units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
        seconds = sum(
            float(number) * units[unit]
            for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", value)
        )
    else:
        raise ConfigError(key, 'must be a duration such as "10s"')
    if abs(seconds) > _LONGEST_DURATION:
        raise ConfigError(key, "is longer than a duration can be (about 292 years)")
    return seconds


def as_mapping(value: Any) -> Mapping[str, Any]:
    """C{value} when it is a mapping; otherwise (an absent section) an empty one."""
    return value if isinstance(value, Mapping) else {}


# -- YAML and environment overrides --------------------------------------------

# Names the config file, as for Distribution; not an override.
CONFIGURATION_PATH_VARIABLE = "REGISTRY_CONFIGURATION_PATH"

# What yaml.safe_load raises for text that is not YAML it can load: not
# only YAMLError, but ValueError, KeyError or AttributeError for a scalar it
# parses and cannot build (a 13th month, "!!int x", more digits than int()
# reads) and RecursionError for deep nesting.
_YAML_FAILURES = (yaml.YAMLError, ValueError, LookupError, AttributeError, RecursionError)


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """
    The mapping YAML C{text} holds; an empty document is an empty mapping.

    @param source: where C{text} comes from, to name in errors.
    @raise ConfigError: naming C{source}, for YAML that does not parse or
        does not hold a mapping.
    """
    try:
        document = yaml.safe_load(text)
    except _YAML_FAILURES as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(source, f"is not valid YAML{where}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(source, "must be a YAML mapping")
    return document


def apply_overrides(
    document: dict[str, Any], environ: Mapping[str, str], schema: Schema
) -> dict[str, Any]:
    """
    Apply C{REGISTRY_*} overrides to C{document}, whose keys C{schema}
    allows; see L{txregistry.config.sections.apply_environment}.

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
        except _YAML_FAILURES as error:
            raise ConfigError(variable, f"is not valid YAML: {error}") from None
        target: dict[str, Any] = document
        kind: Any = schema
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            unlisted = isinstance(kind, OpenSchema) and part not in kind
            # Below a refused or ignored key anything goes here: the checks
            # of the whole document refuse or warn as for the file.
            free = (
                kind is None
                or kind is AnyMapping
                or isinstance(kind, (Unsupported, Ignored))
                or unlisted
            )
            if not free and (not isinstance(kind, dict) or part not in kind):
                raise ConfigError(variable, "matches no configuration key")
            if last:
                target[part] = value
            else:
                existing = target.get(part)
                if not isinstance(existing, dict):
                    existing = target[part] = {}
                target = existing
            # An open schema's unlisted key holds parameters (a driver's).
            kind = AnyMapping if unlisted else None if free else kind[part]
    return document


# -- sections -------------------------------------------------------------------


@dataclass(frozen=True)
class BuildContext:
    """
    What a section's builder may need beyond its own value.

    @ivar document: the whole checked document, for a key read by a section
        other than its own (the deprecated top-level C{loglevel}).
    @ivar known_drivers: the storage driver names that may be chosen, or
        L{None} for any.
    @ivar known_caches: the cache names C{storage.cache.blobdescriptor} may
        choose, or L{None} for any.
    @ivar warnings: the lines to log once the configuration is built; a
        builder may add to them.
    """

    document: Mapping[str, Any]
    known_drivers: Mapping[str, Any] | None
    known_caches: Mapping[str, Any] | None
    warnings: list[str]


@dataclass(frozen=True)
class Section:
    """
    One top-level key of the configuration.

    @ivar key: the key, such as C{"http"}.
    @ivar schema: the kind of its value, checked before anything is built:
        usually a L{Schema}, or L{Unsupported} or L{Ignored} for a section
        txregistry does not implement.
    @ivar build: called with the section's checked value (L{None} when
        absent) and the L{BuildContext}; returns the typed value, or raises
        L{ConfigError} naming the key.  L{None} where checking is all.
    @ivar attribute: the attribute of L{txregistry.config.sections.Config}
        the built value fills; L{None} for a builder that only checks.
    """

    key: str
    schema: Any
    build: Callable[[Any, BuildContext], object] | None = None
    attribute: str | None = None


# -- values shared by sections -----------------------------------------------------


def http_url(key: str, value: str) -> str:
    """
    C{value} if it is an http or https URL with a host (and a valid port).

    @raise ConfigError: naming C{key}, otherwise.
    """
    try:
        parts = urlsplit(value)  # raises for an unclosed [ around an IPv6 address
        _ = parts.port  # raises for a port that is not a number, or out of range
    except ValueError:
        raise ConfigError(key, "must be an http or https URL with a host") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, "must be an http or https URL with a host")
    return str(value)


def header_lists(key: str, value: Mapping[Any, Any] | None) -> dict[str, tuple[str, ...]]:
    """
    HTTP headers as Distribution writes them (a name to a list of values,
    or one value), each name's values as a tuple.

    @raise ConfigError: naming the header's key, for a name that is not a
        string or values that are not strings.
    """
    headers: dict[str, tuple[str, ...]] = {}
    for name, values in (value or {}).items():
        if not isinstance(name, str):
            raise ConfigError(f"{key}.{name}", "keys must be strings")
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(one, str) for one in values):
            raise ConfigError(f"{key}.{name}", "must be a list of strings")
        headers[name] = tuple(values)
    return headers
