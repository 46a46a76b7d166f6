# -*- test-case-name: tests.test_auth -*-
"""
The 401 every access controller answers, with the C{WWW-Authenticate}
challenge worded as Distribution words it.
"""

from __future__ import annotations

from collections.abc import Sequence

from txregistry.auth.access import detail, scope
from txregistry.errors import UNAUTHORIZED, RegistryError
from txregistry.interfaces import Access


def quoted(value: str) -> str:
    """C{value} as an RFC 9110 quoted string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unauthorized(access: Sequence[Access], challenge: str) -> RegistryError:
    """401 UNAUTHORIZED listing C{access}, with C{challenge} to answer."""
    return UNAUTHORIZED(detail(list(access)), headers={"WWW-Authenticate": challenge})


def bearer_challenge(
    realm: str, service: str, access: Sequence[Access], error: str | None = None
) -> str:
    """
    C{Bearer realm="...",service="..."}, then the C{scope} the request needs
    (when it needs any) and the C{error} (when there is one).
    """
    challenge = f"Bearer realm={quoted(realm)},service={quoted(service)}"
    if access:
        challenge += f",scope={quoted(scope(list(access)))}"
    if error is not None:
        challenge += f",error={quoted(error)}"
    return challenge
