# -*- test-case-name: tests.test_api_tags -*-
"""C{GET /v2/<name>/tags/list}: a repository's tags, paged with C{n} and C{last}."""

from __future__ import annotations

from txregistry.errors import NAME_UNKNOWN
from txregistry.resources.app import RequestContext, Response
from txregistry.resources.pagination import page_from


async def list_tags(context: RequestContext) -> Response:
    """
    The tags, sorted; NAME_UNKNOWN for a repository that never had one.
    Without C{n}, every tag; with it, a page read from storage from C{last}
    on (L{txregistry.registry.manifests.TagStore.page}).
    """
    name = context.match.name
    assert name is not None
    paged = await page_from(
        context, context.repository.tags.page, f"{name}/tags/list", default=None, maximum=None
    )
    if paged is None:
        raise NAME_UNKNOWN({"name": name})
    page, headers = paged
    return Response.json({"name": name, "tags": page}, headers=headers)
