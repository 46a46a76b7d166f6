# -*- test-case-name: tests.test_api_manifests -*-
"""
C{GET}, C{HEAD}, C{PUT} and C{DELETE /v2/<name>/manifests/<reference>},
where the reference is a tag or a digest.
"""

from __future__ import annotations

import dataclasses

from txregistry.digest import Digest
from txregistry.errors import (
    DIGEST_INVALID,
    MANIFEST_INVALID,
    MANIFEST_UNKNOWN,
    UNSUPPORTED,
)
from txregistry.events.event import DELETE, PULL, PUSH, content_target, deletion_target
from txregistry.registry.manifest_formats import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MAX_MANIFEST_SIZE,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    accepted_media_types,
    parse_manifest,
)
from txregistry.registry.repository import Repository
from txregistry.resources.app import RequestContext, Response
from txregistry.threads import in_thread

# The platform served to clients that cannot read a Docker manifest list, as
# Distribution does.
DEFAULT_PLATFORM = ("linux", "amd64")


def _manifest_headers(manifest: Manifest) -> dict[str, str]:
    return {
        "Content-Type": manifest.media_type,
        "Docker-Content-Digest": str(manifest.digest),
        "ETag": f'"{manifest.digest}"',
    }


async def _default_platform(repository: Repository, manifest_list: Manifest) -> Manifest:
    for child in manifest_list.manifests:
        platform = child.platform or {}
        if (platform.get("os"), platform.get("architecture")) == DEFAULT_PLATFORM:
            return await repository.manifests.get(child.digest)
    raise MANIFEST_UNKNOWN(
        "manifest list found, but the Accept header does not support manifest lists "
        "and it has no linux/amd64 image"
    )


async def _negotiate(context: RequestContext, manifest: Manifest) -> Manifest:
    """
    Honour C{Accept} as Distribution does: an OCI manifest or index is
    served only to clients that accept it; a Docker manifest list reached by
    tag is replaced by its linux/amd64 image for clients that do not accept
    lists.  C{*/*} accepts anything.
    """
    accepted = accepted_media_types(context.head.headers.getRawHeaders("Accept") or [])
    if "*/*" in accepted or "application/*" in accepted:
        return manifest
    if manifest.media_type == OCI_MANIFEST and OCI_MANIFEST not in accepted:
        raise MANIFEST_UNKNOWN(
            "OCI manifest found, but accept header does not support OCI manifests"
        )
    if manifest.media_type == OCI_INDEX and OCI_INDEX not in accepted:
        raise MANIFEST_UNKNOWN("OCI index found, but accept header does not support OCI indexes")
    if (
        context.match.tag is not None
        and manifest.media_type == DOCKER_MANIFEST_LIST
        and DOCKER_MANIFEST_LIST not in accepted
    ):
        image = await _default_platform(context.repository, manifest)
        if image.media_type == DOCKER_MANIFEST and DOCKER_MANIFEST not in accepted:
            raise MANIFEST_INVALID("Schema 2 manifest not supported by client")
        return image
    return manifest


async def fetch_manifest(context: RequestContext) -> Response:
    """C{GET}/C{HEAD}: the manifest's exact bytes, as its own media type."""
    repository = context.repository
    digest = context.match.digest
    if context.match.tag is not None:
        digest = await repository.tags.get(context.match.tag)
    assert digest is not None
    # Known first: a conditional request vouches for no manifest the
    # repository lacks (one deleted since the client cached it, say).
    manifest = await repository.manifests.get(digest)
    if context.etag_matches(digest):
        return Response(304, {"Docker-Content-Digest": str(digest), "ETag": f'"{digest}"'})
    manifest = await _negotiate(context, manifest)
    if context.head.method == "GET" and context.notifying:
        # A pull, as for Distribution; a HEAD is none.
        context.notify(PULL, _event_target(context, manifest), durable=False)
    return Response(200, _manifest_headers(manifest), manifest.content)


def _event_target(context: RequestContext, manifest: Manifest) -> dict[str, object]:
    """A manifest event's target (see L{txregistry.events.event.content_target})."""
    name = context.match.name
    assert name is not None
    notifications = context.app.notifications
    references = None
    if notifications is not None and notifications.include_references:
        children = (
            manifest.manifests
            if manifest.is_index
            else ((manifest.config,) if manifest.config is not None else ()) + manifest.layers
        )
        references = [child.to_json() for child in children]
    return content_target(
        name,
        manifest.media_type,
        len(manifest.content),
        manifest.digest,
        context.urls.manifest(name, manifest.digest),
        tag=context.match.tag,
        references=references,
    )


def _read_body(context: RequestContext) -> bytes:
    content = context.request.content
    if content is None:
        return b""
    content.seek(0)
    data = content.read(MAX_MANIFEST_SIZE + 1)
    if len(data) > MAX_MANIFEST_SIZE:
        raise MANIFEST_INVALID(f"manifest is larger than {MAX_MANIFEST_SIZE} bytes", status=413)
    return bytes(data)


async def put_manifest(context: RequestContext) -> Response:
    """
    C{PUT}: check, store and (by tag) tag a manifest (201).  Nothing is
    stored when it is invalid or references content the repository lacks.
    """
    context.check_writable()
    content = await in_thread(_read_body, context)
    content_type = (context.head.header("Content-Type") or "").split(";", 1)[0].strip().lower()
    manifest = parse_manifest(content, content_type or None)
    reference = context.match.digest
    if reference is not None:
        if Digest.of(content, reference.algorithm) != reference:
            raise DIGEST_INVALID(f"manifest content does not match {reference}")
        manifest = dataclasses.replace(manifest, digest=reference)
    repository = context.repository
    await repository.manifests.put(manifest)
    if context.match.tag is not None:
        await repository.tags.tag(context.match.tag, manifest.digest)
    name = context.match.name
    assert name is not None
    headers = {
        "Location": context.urls.manifest(name, manifest.digest),
        "Docker-Content-Digest": str(manifest.digest),
    }
    if manifest.subject is not None:
        headers["OCI-Subject"] = str(manifest.subject.digest)
    await context.notify(PUSH, _event_target(context, manifest), durable=True)
    return Response(201, headers)


async def delete_manifest(context: RequestContext) -> Response:
    """
    C{DELETE}: by digest, remove the manifest and every tag pointing at it;
    by tag, remove only the tag (OCI 1.1).  202 either way.
    """
    context.check_writable()
    if not context.app.registry.delete_enabled:
        raise UNSUPPORTED("deletes are disabled (storage.delete.enabled is false)")
    repository = context.repository
    name = context.match.name
    assert name is not None
    if context.match.tag is not None:
        await repository.tags.untag(context.match.tag)
        # As Distribution 3: a tag's delete names the tag.
        await context.notify(DELETE, deletion_target(name, tag=context.match.tag), durable=True)
        return Response(202)
    digest = context.match.digest
    assert digest is not None
    await repository.manifests.get(digest)  # MANIFEST_UNKNOWN before anything changes
    # The tags first: a crash half-way leaves the manifest with fewer tags,
    # never a tag naming a manifest that is gone.
    untagged = []
    for tag in await repository.tags.pointing_at(digest):
        try:
            await repository.tags.untag(tag)
        except Exception:
            continue  # removed meanwhile
        untagged.append(tag)
    await repository.manifests.delete(digest)
    # The manifest's delete, then one for each tag it took along, as
    # Distribution sends them.
    await context.notify(DELETE, deletion_target(name, digest), durable=True)
    for tag in untagged:
        await context.notify(DELETE, deletion_target(name, tag=tag), durable=True)
    return Response(202)
