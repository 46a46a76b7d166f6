# -*- test-case-name: tests.test_auth -*-
"""
What each request asks of the access controller, as Distribution's
C{registry/handlers/app.go} derives it from the route and the method:

  - C{GET /v2/}: nothing, but the client must be known;
  - C{GET /v2/_catalog}: C{registry:catalog:*};
  - reads (C{GET}, C{HEAD}) of a repository: C{pull};
  - writes (C{POST}, C{PUT}, C{PATCH}): C{pull} and C{push};
  - C{DELETE}: C{delete}.

A cross-repository mount also needs C{pull} on the source repository;
without it, the mount becomes a plain upload (see
L{txregistry.resources.uploads}), so that is asked separately.
"""

from __future__ import annotations

from txregistry.interfaces import Access
from txregistry.resources.routes import RouteMatch

CATALOG = Access("registry", "catalog", "*")

_ACTIONS = {
    "GET": ("pull",),
    "HEAD": ("pull",),
    "POST": ("pull", "push"),
    "PUT": ("pull", "push"),
    "PATCH": ("pull", "push"),
    "DELETE": ("delete",),
}


def required_access(match: RouteMatch, method: str) -> list[Access]:
    """The access a request for C{match} with C{method} needs."""
    if match.route.name == "catalog":
        return [CATALOG]
    if match.name is None:
        return []
    return [repository_access(match.name, action) for action in _ACTIONS.get(method, ())]


def repository_access(name: str, action: str) -> Access:
    """C{repository:<name>:<action>}."""
    return Access("repository", name, action)


def scope(access: list[Access]) -> str:
    """
    The token spec's C{scope} for C{access}: one C{type:name:actions} per
    resource, actions joined by commas, resources by spaces, in the order
    first asked.
    """
    actions: dict[tuple[str, str], list[str]] = {}
    for one in access:
        listed = actions.setdefault((one.type, one.name), [])
        if one.action not in listed:
            listed.append(one.action)
    return " ".join(f"{kind}:{name}:{','.join(acts)}" for (kind, name), acts in actions.items())


def detail(access: list[Access]) -> list[dict[str, str]]:
    """The C{detail} of a 401, as Distribution lists what was asked."""
    return [
        {"Type": one.type, "Class": "", "Name": one.name, "Action": one.action} for one in access
    ]
