# -*- test-case-name: tests.test_metrics -*-
"""
The debug server of C{http.debug.addr}: a second listener, for operators
and their tools only, whose resource tree other parts of txregistry mount
their pages on (the Prometheus metrics here; the health checks' page).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

# The text format every Prometheus reads (2.x as well as 3.x), which
# generate_latest writes whatever the library's newest content type is.
METRICS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class DebugRoot(Resource):
    """
    The debug server's root: nothing but what is mounted on it; every
    other path, the root itself included, is a 404.
    """

    def mount(self, path: str, resource: IResource) -> None:
        """
        Serve C{resource} at C{path} (C{"/metrics"}, C{"/debug/health"}),
        making the folders on the way.

        @raise ValueError: for a path that is not absolute, or is taken.
        """
        segments = path.strip("/").split("/")
        if not path.startswith("/") or not all(segments):
            raise ValueError(f"{path!r} is not a path such as /metrics")
        parent: Resource = self
        for segment in segments[:-1]:
            name = segment.encode("utf-8")
            child = parent.children.get(name)
            if child is None:
                child = DebugRoot()
                parent.putChild(name, child)
            if not isinstance(child, DebugRoot):
                raise ValueError(f"{path!r}: {segment!r} is taken")
            parent = child
        last = segments[-1].encode("utf-8")
        if last in parent.children:
            raise ValueError(f"{path!r} is taken")
        parent.putChild(last, resource)

    def getChild(self, path: bytes, request: Request) -> IResource:
        """An unknown path: a 404."""
        return notFound()

    def render(self, request: Request) -> bytes:
        """The root (or a folder) itself: a 404."""
        result: bytes = notFound().render(request)
        return result


class MetricsResource(Resource):
    """Prometheus's text exposition of C{registry}'s metrics."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        """The metrics, as of now."""
        request.setHeader(b"Content-Type", METRICS_CONTENT_TYPE)
        return generate_latest(self.registry)


class DebugSite(Site):
    """
    The debug server's site.  Its requests are not access-logged: a scrape
    every few seconds would drown the registry's own lines.
    """

    def log(self, request: Any) -> None:
        """Log nothing."""
