# -*- test-case-name: tests.test_config -*-
"""
The C{proxy} section: the upstream registries of the pull-through cache.

Distribution 3's keys name one upstream (C{remoteurl}, C{username},
C{password}, C{ttl}); its credential helper (C{exec}) is refused.  Ours
add C{checktimeout} (how long a tag's upstream check may take before the
cache answers) and C{remotes}: more upstreams, each serving the
repositories below its C{prefix}.  As for Distribution, a section with no
C{remoteurl} (or an empty one) and no C{remotes} configures no proxy.
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
    OpenSchema,
    Schema,
    Section,
    Unsupported,
    as_mapping,
    check,
    http_url,
    parse_duration,
)
from txregistry.names import _PATH_COMPONENT, NAME_TOTAL_LENGTH_MAX

# Distribution 3's default: a week.
DEFAULT_TTL = 168 * 3600.0

DEFAULT_CHECK_TIMEOUT = 5.0


@dataclass(frozen=True)
class Remote:
    """
    One upstream registry.

    @ivar prefix: the path components (no slash at either end) that name its
        repositories here: C{ghcr} serves C{ghcr/owner/img} as C{owner/img}
        upstream.  C{""} for C{proxy.remoteurl}, which serves any repository
        under its own name.
    @ivar url: its base URL, http or https, without a trailing slash.
    @ivar username: the user to log in to it as, or L{None} to pull
        anonymously.
    @ivar password: the user's password, or L{None}.
    @ivar ttl: seconds a cached blob or manifest is kept after it was last
        pulled through, or L{None} to keep it for ever (a C{ttl} of 0).
    """

    prefix: str
    url: str
    username: str | None = None
    password: str | None = None
    ttl: float | None = DEFAULT_TTL


@dataclass(frozen=True)
class ProxyConfig:
    """
    The C{proxy} section.

    @ivar remotes: the upstreams, longest prefix first, so that the first
        whose prefix matches a name is the longest match; the default remote
        (prefix C{""}), if any, last.
    @ivar check_timeout: seconds a tag's upstream C{HEAD} may take before the
        cache answers with what it holds (C{checktimeout}).
    """

    remotes: tuple[Remote, ...]
    check_timeout: float = DEFAULT_CHECK_TIMEOUT

    def remote_for(self, name: str) -> tuple[Remote, str] | None:
        """
        The remote serving repository C{name}, and the repository's name
        upstream.

        A prefix matches on whole path components with a repository left
        below it: C{ghcr} serves C{ghcr/a/b} as C{a/b}, but neither
        C{ghcrx/a} nor C{ghcr} itself.  The longest matching prefix wins;
        a name no prefix matches goes to the default remote unchanged.

        @return: the remote and the upstream name, or L{None} when no remote
            serves C{name} (no prefix matches and there is no default).
        """
        for remote in self.remotes:
            if not remote.prefix:
                return remote, name
            if name.startswith(remote.prefix + "/") and len(name) > len(remote.prefix) + 1:
                return remote, name[len(remote.prefix) + 1 :]
        return None


_PREFIX_COMPONENT = re.compile(_PATH_COMPONENT, re.ASCII)

_EXEC = Unsupported(
    "a credential helper is not supported by txregistry; give username and password instead"
)

_REMOTE_SCHEMA: Schema = {
    "prefix": str,
    "remoteurl": str,
    "username": str,
    "password": str,
    "ttl": Duration,
    "exec": _EXEC,
}

# The check of the whole document cannot say what the list of remotes
# holds; the builder checks C{remotes}, and refuses any other unlisted key.
_SCHEMA = OpenSchema(
    {
        "remoteurl": str,
        "username": str,
        "password": str,
        "ttl": Duration,
        "checktimeout": Duration,
        "exec": _EXEC,
    }
)


def _ttl(key: str, value: Any, default: float | None) -> float | None:
    """Seconds in the duration C{value}: C{default} when absent, L{None} for 0."""
    if value is None:
        return default
    seconds = parse_duration(key, value)
    if seconds < 0:
        raise ConfigError(key, "must not be negative; 0 keeps cached content for ever")
    return seconds or None


def _remote(key: str, prefix: str, entry: Mapping[str, Any], ttl: float | None) -> Remote:
    """
    The remote that C{entry}, found at C{key}, describes.

    @param ttl: the C{ttl} when C{entry} has none.
    @raise ConfigError: naming the key at fault: a URL that is not http or
        https, a password without a user, a negative C{ttl}.
    """
    url = entry.get("remoteurl")
    if not url:
        raise ConfigError(f"{key}.remoteurl", "missing; the upstream registry's URL")
    # As in Go, an empty string is none.
    username = entry.get("username") or None
    password = entry.get("password") or None
    if password is not None and username is None:
        raise ConfigError(f"{key}.username", f"missing; {key}.password is given without it")
    return Remote(
        prefix=prefix,
        url=http_url(f"{key}.remoteurl", url).rstrip("/"),
        username=username,
        password=password,
        ttl=_ttl(f"{key}.ttl", entry.get("ttl"), ttl),
    )


def _prefix(key: str, value: Any) -> str:
    """
    The repository-name prefix C{value}, without slashes at either end.

    @raise ConfigError: naming C{key}, for a missing or empty prefix, or one
        whose components are not those of a repository name.
    """
    if value is None:
        raise ConfigError(key, "missing; the path components naming the remote's repositories")
    prefix: str = value.strip("/")
    if not prefix:
        raise ConfigError(
            key, "must name at least one path component; proxy.remoteurl is the default"
        )
    for component in prefix.split("/"):
        if _PREFIX_COMPONENT.fullmatch(component) is None:
            raise ConfigError(
                key,
                f"{component!r} is not a component of a repository name "
                "(lowercase letters and digits, separated by '.', '_', '__' or '-')",
            )
    # Room for a slash and a one-letter repository below it.
    if len(prefix) > NAME_TOTAL_LENGTH_MAX - 2:
        raise ConfigError(key, "leaves no room for a repository name below it")
    return prefix


def _remotes(value: Any, ttl: float | None, warnings: list[str]) -> list[Remote]:
    """
    The typed C{proxy.remotes}.

    @param ttl: the C{ttl} of a remote that has none.
    @raise ConfigError: naming the key at fault, for a value that is not a
        list, an entry that is not a mapping, a mistake in an entry, or a
        prefix given twice.
    """
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError("proxy.remotes", "must be a list of remotes")
    remotes = []
    seen: dict[str, str] = {}
    for index, entry in enumerate(value):
        key = f"proxy.remotes[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(key, "must be a mapping with a prefix and remoteurl")
        check(key, entry, _REMOTE_SCHEMA, warnings.append)
        prefix = _prefix(f"{key}.prefix", entry.get("prefix"))
        first = seen.setdefault(prefix, key)
        if first != key:
            raise ConfigError(f"{key}.prefix", f"{prefix!r} is already the prefix of {first}")
        remotes.append(_remote(key, prefix, entry, ttl))
    return remotes


def _build(value: Any, context: BuildContext) -> ProxyConfig | None:
    """
    The typed C{proxy} section, or L{None} when it names no remote.

    @raise ConfigError: naming the key at fault: an unknown key, a URL that
        is not http or https, a password without a user, a negative C{ttl},
        a C{checktimeout} of zero or less, and every mistake in C{remotes}.
    """
    proxy = as_mapping(value)
    for key in proxy:
        if key != "remotes" and key not in _SCHEMA:
            raise ConfigError(f"proxy.{key}", "unknown key")
    if not proxy.get("remoteurl") and not proxy.get("remotes"):
        if any(proxy.values()):
            context.warnings.append(
                "proxy: no remoteurl and no remotes, so this registry is not a "
                "pull-through cache; the section's other keys are ignored"
            )
        return None
    ttl = _ttl("proxy.ttl", proxy.get("ttl"), DEFAULT_TTL)
    remotes = _remotes(proxy.get("remotes"), ttl, context.warnings)
    if proxy.get("remoteurl"):
        remotes.append(_remote("proxy", "", proxy, ttl))
    # Stable: remotes of one length keep their order, though two of them
    # never match one name.
    remotes.sort(key=lambda remote: len(remote.prefix), reverse=True)
    check_timeout = DEFAULT_CHECK_TIMEOUT
    if proxy.get("checktimeout") is not None:
        check_timeout = parse_duration("proxy.checktimeout", proxy["checktimeout"])
        if check_timeout <= 0:
            raise ConfigError("proxy.checktimeout", "must be a positive duration")
    return ProxyConfig(remotes=tuple(remotes), check_timeout=check_timeout)


SECTION = Section("proxy", _SCHEMA, build=_build, attribute="proxy")
