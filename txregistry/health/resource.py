# -*- test-case-name: tests.test_health -*-
"""
C{/debug/health}: the failing checks as JSON, as Distribution's
C{health.StatusHandler}: C{{}} and 200 while every check passes, else each
failing check's name with why, and 503.  Methods other than C{GET} are
not found (404), as there.
"""

from __future__ import annotations

import json

from twisted.web.resource import Resource
from twisted.web.server import Request

from txregistry.health.status import HealthChecks

JSON_CONTENT_TYPE = b"application/json; charset=utf-8"


class HealthResource(Resource):
    """The state of C{checks}, for load balancers and probes."""

    isLeaf = True

    def __init__(self, checks: HealthChecks) -> None:
        super().__init__()
        self.checks = checks

    def render(self, request: Request) -> bytes:
        """C{GET}: the failing checks; anything else: 404."""
        if request.method != b"GET":
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"404 page not found\n"
        status = self.checks.status()
        body = json.dumps(status).encode("utf-8")
        request.setResponseCode(503 if status else 200)
        request.setHeader(b"Content-Type", JSON_CONTENT_TYPE)
        request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
        return body
