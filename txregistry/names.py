# -*- test-case-name: tests.test_names -*-
"""
Repository names and tags, by Distribution's reference grammar.
"""

from __future__ import annotations

import re

from txregistry.errors import NAME_INVALID

NAME_TOTAL_LENGTH_MAX = 255

_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_NAME = re.compile(rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*", re.ASCII)
TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)


def check_repository_name(name: str) -> str:
    """
    Return C{name} when it is a legal repository name.

    @raise txregistry.errors.RegistryError: NAME_INVALID otherwise, saying why.
    """
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise NAME_INVALID(
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    if not _NAME.fullmatch(name):
        raise NAME_INVALID(f"invalid repository name: {name[:300]!r}")
    if ":" in name:
        # Legal in a reference's domain, but a registry's own repositories
        # carry no host; a colon is not legal in a storage path either.
        raise NAME_INVALID(f"repository name must not name a host and port: {name!r}")
    return name
