# -*- test-case-name: tests.test_api_catalog -*-
"""C{GET /v2/_catalog}: the repositories, paged with C{n} and C{last}."""

from __future__ import annotations

from txregistry.registry.catalog import path_order
from txregistry.resources.app import RequestContext, Response
from txregistry.resources.pagination import page_from

DEFAULT_PAGE = 100


async def list_repositories(context: RequestContext) -> Response:
    """
    One page of repository names (100 by default), read from C{last} on;
    an C{n} above C{catalog.maxentries} is PAGINATION_NUMBER_INVALID.
    """
    maximum = context.app.config.catalog_max_entries
    paged = await page_from(
        context,
        context.app.registry.repositories_page,
        "_catalog",
        default=min(DEFAULT_PAGE, maximum),
        maximum=maximum,
        order=path_order,
    )
    assert paged is not None  # the catalog always exists
    page, headers = paged
    return Response.json({"repositories": page}, headers=headers)
