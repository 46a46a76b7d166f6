# -*- test-case-name: tests.test_api -*-
"""C{GET /v2/}: the API version check clients start with."""

from __future__ import annotations

from txregistry.resources.app import RequestContext, Response


async def api_version_check(context: RequestContext) -> Response:
    """200 with an empty JSON object: this registry speaks v2."""
    return Response.json({})
