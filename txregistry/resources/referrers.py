# -*- test-case-name: tests.test_api_referrers -*-
"""
C{GET /v2/<name>/referrers/<digest>} (OCI 1.1): the manifests whose subject
is that digest, as an image index, filtered by C{artifactType} on request.
"""

from __future__ import annotations

from txregistry.registry.manifest_formats import OCI_INDEX
from txregistry.resources.app import RequestContext, Response


async def list_referrers(context: RequestContext) -> Response:
    """An OCI index of the referrers; empty (200) for an unknown subject."""
    subject = context.match.digest
    assert subject is not None
    referrers = await context.repository.manifests.referrers(subject)
    headers = {"Content-Type": OCI_INDEX}
    artifact_type = context.head.argument("artifactType")
    if artifact_type:
        referrers = [m for m in referrers if m.artifact_type == artifact_type]
        headers["OCI-Filters-Applied"] = "artifactType"
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [manifest.descriptor().to_json() for manifest in referrers],
    }
    return Response.json(index, headers=headers)
