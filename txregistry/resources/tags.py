# -*- test-case-name: tests.test_api_tags -*-
"""C{GET /v2/<name>/tags/list}: a repository's tags, paged with C{n} and C{last}."""

from __future__ import annotations

from txregistry.errors import NAME_UNKNOWN
from txregistry.resources.app import RequestContext, Response
from txregistry.resources.pagination import page_of


async def list_tags(context: RequestContext) -> Response:
    """
    The tags, sorted; NAME_UNKNOWN for a repository that never had one.
    Without C{n}, every tag.
    """
    name = context.match.name
    assert name is not None
    tags = await context.repository.tags.all()
    if tags is None:
        raise NAME_UNKNOWN({"name": name})
    page, headers = page_of(context, tags, f"{name}/tags/list", default=None, maximum=None)
    return Response.json({"name": name, "tags": page}, headers=headers)
