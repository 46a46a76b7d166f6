"""
C{PUT}, C{GET}, C{HEAD} and C{DELETE /v2/<name>/manifests/<reference>} over
real HTTP against txregistry processes: every manifest media type, bytes
served exactly as pushed, references by tag, sha256 and sha512 digest,
conditional requests, C{Accept} negotiation, invalid manifests, references
to content the repository lacks, foreign layers under each URL policy, the
size limit, subjects, deletes by digest and by tag, deletes disabled and
read-only mode.
"""

from __future__ import annotations

import json
import os

import pytest

from manifest_support import (
    DOCKER_CONFIG,
    DOCKER_FOREIGN_LAYER,
    DOCKER_LAYER,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    EMPTY_CONFIG_DIGEST,
    EMPTY_TYPE,
    OCI_CONFIG,
    OCI_FOREIGN_LAYER,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    SCHEMA1,
    SCHEMA1_SIGNED,
    Images,
    assert_error,
    descriptor,
    encode,
    error_details,
    sha256,
    sha512,
)
from support import MISSING

MAX_MANIFEST_SIZE = 4 * 1024 * 1024


@pytest.fixture
def images(registry, repo):
    """Pushes to C{repo} of the shared registry."""
    return Images(registry, repo)


def _assert_manifest(response, content, media_type, digest=None, method="GET"):
    """A 200 serving C{content} as C{media_type}, with its digest headers."""
    digest = digest or sha256(content)
    assert response.status == 200, response.body
    assert response.header("Content-Type") == media_type
    assert response.header("Docker-Content-Digest") == digest
    assert response.header("ETag") == f'"{digest}"'
    assert response.header("Content-Length") == str(len(content))
    assert response.body == (content if method == "GET" else b"")


def _assert_unknown(images, reference, **options):
    """GET and HEAD of C{reference} answer 404 MANIFEST_UNKNOWN."""
    assert_error(images.get(reference, **options), 404, "MANIFEST_UNKNOWN")
    head = images.get(reference, method="HEAD", **options)
    assert head.status == 404
    assert head.body == b""


def _assert_not_stored(images, content):
    """Nothing of C{content} was stored: no revision, no bytes, not served."""
    digest = sha256(content)
    assert not images.revision_link(digest).exists()
    assert not images.registry.blob_file(digest).exists()
    _assert_unknown(images, digest)


# -- each media type -----------------------------------------------------------------


def _oci_image(images):
    return images.image(OCI_MANIFEST, layers=2)


def _docker_image(images):
    return images.image(DOCKER_MANIFEST, layers=2)


def _oci_index(images):
    children = [
        (images.image(OCI_MANIFEST), {"os": "linux", "architecture": "amd64"}),
        (images.image(OCI_MANIFEST), {"os": "linux", "architecture": "arm64"}),
    ]
    for content, _ in children:
        images.push(sha256(content), content)
    return images.index(children, OCI_INDEX)


def _docker_list(images):
    children = [
        (images.image(DOCKER_MANIFEST), {"os": "linux", "architecture": "amd64"}),
        (images.image(DOCKER_MANIFEST), {"os": "linux", "architecture": "arm", "variant": "v7"}),
    ]
    for content, _ in children:
        images.push(sha256(content), content)
    return images.index(children, DOCKER_LIST)


def _oci_artifact(images):
    content = images.artifact("application/vnd.example.sbom", annotations={"a": "b"})
    document = json.loads(content)
    assert document["config"] == {"mediaType": EMPTY_TYPE, "digest": EMPTY_CONFIG_DIGEST, "size": 2}
    return content


KINDS = {
    "oci-image": (_oci_image, OCI_MANIFEST),
    "oci-index": (_oci_index, OCI_INDEX),
    "docker-image": (_docker_image, DOCKER_MANIFEST),
    "docker-list": (_docker_list, DOCKER_LIST),
    "oci-artifact": (_oci_artifact, OCI_MANIFEST),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_push_pull_delete(registry, images, repo, kind):
    build, media_type = KINDS[kind]
    content = build(images)
    digest = sha256(content)
    response = images.put("latest", content, media_type)
    assert response.status == 201, response.body
    assert response.header("Location") == f"{registry.url}/v2/{repo}/manifests/{digest}"
    assert response.header("Docker-Content-Digest") == digest
    assert response.header("Content-Length") == "0"
    assert response.header("OCI-Subject") is None
    assert response.body == b""
    for reference in ("latest", digest):
        for method in ("GET", "HEAD"):
            fetched = images.get(reference, accept=media_type, method=method)
            _assert_manifest(fetched, content, media_type, method=method)
    # As stored: the bytes as a blob, a revision link, and the tag.
    assert registry.blob_file(digest).read_bytes() == content
    assert images.revision_link(digest).read_bytes() == digest.encode()
    assert (images.tags_dir() / "latest" / "current" / "link").read_bytes() == digest.encode()
    deleted = images.delete(digest)
    assert deleted.status == 202, deleted.body
    assert deleted.body == b""
    _assert_unknown(images, digest)
    _assert_unknown(images, "latest")
    assert not images.revision_link(digest).exists()


def test_served_by_a_second_process(registry, images, repo, start_registry):
    """Read back from storage, not from the pushing process's memory."""
    pushed = {}
    for kind, (build, media_type) in KINDS.items():
        content = build(images)
        images.push(kind, content, media_type)
        pushed[kind] = (content, media_type)
    other = Images(start_registry(root=registry.root), repo)
    for kind, (content, media_type) in pushed.items():
        _assert_manifest(other.get(kind), content, media_type)
        _assert_manifest(other.get(sha256(content)), content, media_type)


def test_bytes_served_exactly_as_pushed(images):
    config = images.blob(OCI_CONFIG)
    layer = images.blob(OCI_LAYER)
    content = (
        b'\r\n  {\n\t"layers" :[ %s ],\n"config":\t%s ,  "schemaVersion"  :  2,'
        b'"annotations": {"z": "\\u00e9t\\u00e9", "a": "\xc3\xa9"},\n'
        b'   "mediaType":"%s"   }\n\n   '
    ) % (encode(layer), json.dumps(config, indent=3).encode(), OCI_MANIFEST.encode())
    digest = images.push("odd", content)
    assert digest == sha256(content)
    for reference in ("odd", digest):
        _assert_manifest(images.get(reference), content, OCI_MANIFEST)


@pytest.mark.parametrize("content_type", [OCI_MANIFEST, ""])
def test_oci_manifest_without_media_type(registry, images, repo, start_registry, content_type):
    """The Content-Type of an OCI manifest that omits mediaType is still its own."""
    content = images.image(declare=False)
    assert b"mediaType" not in content.split(b'"config"')[0]
    digest = images.push("bare", content, content_type)
    _assert_manifest(images.get("bare"), content, OCI_MANIFEST)
    _assert_manifest(images.get(digest), content, OCI_MANIFEST)
    _assert_manifest(images.get(digest, accept=OCI_MANIFEST), content, OCI_MANIFEST)
    other = Images(start_registry(root=registry.root), repo)
    _assert_manifest(other.get(digest), content, OCI_MANIFEST)


@pytest.mark.parametrize("content_type", [OCI_INDEX, ""])
def test_oci_index_without_media_type(registry, images, repo, start_registry, content_type):
    child = images.image()
    images.push(sha256(child), child)
    content = images.index([(child, None)], declare=False)
    digest = images.push("bare", content, content_type)
    _assert_manifest(images.get("bare"), content, OCI_INDEX)
    other = Images(start_registry(root=registry.root), repo)
    _assert_manifest(other.get(digest), content, OCI_INDEX)


@pytest.mark.parametrize(
    "content_type",
    [
        f"{OCI_MANIFEST}; charset=utf-8",
        OCI_MANIFEST.upper(),
        f"  {OCI_MANIFEST}  ",
    ],
)
def test_content_type_spelling(images, content_type):
    content = images.image(OCI_MANIFEST)
    images.push("spelled", content, content_type)
    _assert_manifest(images.get("spelled"), content, OCI_MANIFEST)


@pytest.mark.parametrize("content_type", ["application/json", "application/octet-stream", ""])
def test_media_type_from_the_document(images, content_type):
    """A Content-Type that names no manifest type: the document's mediaType decides."""
    content = images.image(DOCKER_MANIFEST)
    images.push("generic", content, content_type)
    _assert_manifest(images.get("generic"), content, DOCKER_MANIFEST)


# -- references ----------------------------------------------------------------------


def test_put_by_digest(registry, images, repo):
    content = images.image()
    digest = sha256(content)
    response = images.put(digest, content)
    assert response.status == 201, response.body
    assert response.header("Location") == f"{registry.url}/v2/{repo}/manifests/{digest}"
    assert response.header("Docker-Content-Digest") == digest
    _assert_manifest(images.get(digest), content, OCI_MANIFEST)
    assert not images.tags_dir().exists()
    # The same bytes again: the same manifest.
    assert images.push(digest, content) == digest
    assert images.push("tagged", content) == digest
    _assert_manifest(images.get("tagged"), content, OCI_MANIFEST)


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_put_by_digest_not_matching(images, algorithm):
    content = images.image()
    other = content + b" "
    wrong = sha256(other) if algorithm == "sha256" else sha512(other)
    assert_error(images.put(wrong, content), 400, "DIGEST_INVALID")
    _assert_not_stored(images, content)
    _assert_unknown(images, wrong)


def test_sha512_reference(registry, images, repo, start_registry):
    content = images.image()
    digest = sha512(content)
    response = images.put(digest, content)
    assert response.status == 201, response.body
    assert response.header("Docker-Content-Digest") == digest
    assert response.header("Location") == f"{registry.url}/v2/{repo}/manifests/{digest}"
    assert images.revision_link(digest).read_bytes() == digest.encode()
    for method in ("GET", "HEAD"):
        _assert_manifest(images.get(digest, method=method), content, OCI_MANIFEST, digest, method)
    # The sha256 digest of the same bytes names no manifest of the repository.
    _assert_unknown(images, sha256(content))
    # Read back from storage, the manifest keeps the digest it was pushed by.
    other = Images(start_registry(root=registry.root), repo)
    _assert_manifest(other.get(digest), content, OCI_MANIFEST, digest)
    assert other.get(digest, If_None_Match=f'"{digest}"').status == 304
    assert images.delete(digest).status == 202
    _assert_unknown(images, digest)


def test_put_by_tag_moves_the_tag(images):
    first = images.image()
    second = images.image()
    first_digest = images.push("moving", first)
    second_digest = images.push("moving", second)
    _assert_manifest(images.get("moving"), second, OCI_MANIFEST)
    _assert_manifest(images.get(first_digest), first, OCI_MANIFEST)
    index = images.tags_dir() / "moving" / "index" / "sha256"
    assert sorted(path.name for path in index.iterdir()) == sorted(
        digest.split(":")[1] for digest in (first_digest, second_digest)
    )


def test_manifest_of_another_repository(images, repo):
    content = images.image()
    digest = images.push("mine", content)
    other = f"{repo}-other"
    _assert_unknown(images, digest, repo=other)
    _assert_unknown(images, "mine", repo=other)


@pytest.mark.parametrize("reference", ["nosuchtag", MISSING])
def test_unknown_manifest(images, reference):
    _assert_unknown(images, reference)
    images.push("present", images.image())
    _assert_unknown(images, reference)


@pytest.mark.parametrize(
    "tag",
    [
        "-leading-dash",
        ".leading-dot",
        "a" * 129,
        "t%40g",
        "sp%20ace",
        "caf%C3%A9",
        "t%21",
    ],
)
def test_invalid_tag(images, tag):
    """
    A PUT (or DELETE) of a reference outside the tag grammar is told so;
    a GET or HEAD answers that no such manifest is there (404), as
    pattern-routed registries do and the OCI conformance suite expects.
    """
    content = images.image()
    assert_error(images.put(tag, content), 400, "TAG_INVALID")
    _assert_unknown(images, tag)
    assert_error(images.delete(tag), 400, "TAG_INVALID")
    _assert_not_stored(images, content)


def test_invalid_manifest_name(images):
    """
    The OCI conformance suite's C{.INVALID_MANIFEST_NAME}: GET and HEAD
    answer 404 MANIFEST_UNKNOWN, whether the repository exists or not.
    """
    _assert_unknown(images, ".INVALID_MANIFEST_NAME")
    images.push("present", images.image())
    _assert_unknown(images, ".INVALID_MANIFEST_NAME")
    _assert_unknown(images, ".INVALID_MANIFEST_NAME", repo=f"{images.repo}-absent")


@pytest.mark.parametrize("tag", ["a" * 128, "_", "0", "v1.2.3-rc.1_build", "UPPER.case"])
def test_valid_tag(images, tag):
    content = images.image()
    images.push(tag, content)
    _assert_manifest(images.get(tag), content, OCI_MANIFEST)
    assert tag in images.tags().json()["tags"]


@pytest.mark.parametrize(
    "reference",
    ["sha256:xyz", "sha256:" + "A" * 64, "md5:" + "a" * 32, "sha512:" + "a" * 64, "sha256:"],
)
def test_invalid_digest_reference(images, reference):
    content = images.image()
    assert_error(images.put(reference, content), 400, "DIGEST_INVALID")
    assert_error(images.get(reference), 400, "DIGEST_INVALID")
    assert_error(images.delete(reference), 400, "DIGEST_INVALID")
    _assert_not_stored(images, content)


# -- conditional requests --------------------------------------------------------------


def test_if_none_match(images):
    content = images.image()
    digest = images.push("cached", content)
    for reference in ("cached", digest):
        for value in (f'"{digest}"', digest):
            for method in ("GET", "HEAD"):
                response = images.get(reference, method=method, If_None_Match=value)
                assert response.status == 304, (reference, value, method, response.body)
                assert response.body == b""
                assert response.header("ETag") == f'"{digest}"'
                assert response.header("Docker-Content-Digest") == digest
        stale = images.get(reference, If_None_Match=f'"{MISSING}"')
        _assert_manifest(stale, content, OCI_MANIFEST)


def test_if_none_match_list_and_star(images):
    digest = images.push("cached", images.image())
    for value in (f'"{MISSING}", "{digest}"', f'W/"x",{digest}', "*"):
        response = images.get("cached", If_None_Match=value)
        assert response.status == 304, (value, response.body)
        assert response.header("Docker-Content-Digest") == digest


def test_if_none_match_on_a_manifest_not_there(images, repo):
    """A conditional request does not vouch for a manifest the repository lacks."""
    content = images.image()
    digest = images.push("gone", content)
    for name in (f"{repo}-other", "nosuch/repository"):
        response = images.get(digest, repo=name, If_None_Match=f'"{digest}"')
        assert_error(response, 404, "MANIFEST_UNKNOWN")
    assert images.delete(digest).status == 202
    for reference in (digest, "gone"):
        response = images.get(reference, If_None_Match=f'"{digest}"')
        assert_error(response, 404, "MANIFEST_UNKNOWN")


# -- Accept --------------------------------------------------------------------------


def test_oci_manifest_needs_an_accept_that_names_it(images):
    content = images.image(OCI_MANIFEST)
    digest = images.push("oci", content)
    for reference in ("oci", digest):
        for accept in (DOCKER_MANIFEST, f"{DOCKER_MANIFEST}, {DOCKER_LIST}", OCI_INDEX, None):
            _assert_unknown(images, reference, accept=accept)
        for accept in (
            OCI_MANIFEST,
            "*/*",
            "application/*",
            f"{DOCKER_MANIFEST};q=0.9, {OCI_MANIFEST};q=0.5",
            f"text/html,{OCI_MANIFEST.upper()}",
        ):
            _assert_manifest(images.get(reference, accept=accept), content, OCI_MANIFEST)


def test_oci_index_needs_an_accept_that_names_it(images):
    content = _oci_index(images)
    digest = images.push("index", content)
    for reference in ("index", digest):
        for accept in (OCI_MANIFEST, f"{DOCKER_MANIFEST}, {DOCKER_LIST}", None):
            _assert_unknown(images, reference, accept=accept)
        for accept in (OCI_INDEX, "*/*"):
            _assert_manifest(images.get(reference, accept=accept), content, OCI_INDEX)


def test_docker_manifest_by_digest_whatever_the_accept(images):
    content = images.image(DOCKER_MANIFEST)
    digest = images.push("docker", content)
    for accept in (DOCKER_MANIFEST, OCI_MANIFEST, "*/*", None):
        _assert_manifest(images.get(digest, accept=accept), content, DOCKER_MANIFEST)


def _platform_list(images, platforms):
    children = []
    for platform in platforms:
        child = images.image(DOCKER_MANIFEST)
        images.push(sha256(child), child)
        children.append((child, platform))
    content = images.index(children, DOCKER_LIST)
    return content, [child for child, _ in children]


def test_docker_list_by_tag_without_list_support(images):
    content, children = _platform_list(
        images,
        [
            {"os": "linux", "architecture": "arm64"},
            {"os": "windows", "architecture": "amd64"},
            {"os": "linux", "architecture": "amd64"},
            {"os": "linux", "architecture": "amd64", "variant": "v3"},
        ],
    )
    digest = images.push("multi", content)
    amd64 = children[2]
    for accept in (DOCKER_MANIFEST, f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"):
        for method in ("GET", "HEAD"):
            response = images.get("multi", accept=accept, method=method)
            _assert_manifest(response, amd64, DOCKER_MANIFEST, method=method)
        # By digest, the list itself: nothing else has that digest.
        _assert_manifest(images.get(digest, accept=accept), content, DOCKER_LIST)
    for accept in (DOCKER_LIST, f"{DOCKER_MANIFEST}, {DOCKER_LIST}", "*/*"):
        _assert_manifest(images.get("multi", accept=accept), content, DOCKER_LIST)


def test_docker_list_without_linux_amd64(images):
    content, _ = _platform_list(
        images,
        [{"os": "linux", "architecture": "arm64"}, {"os": "windows", "architecture": "amd64"}],
    )
    digest = images.push("noamd64", content)
    _assert_unknown(images, "noamd64", accept=DOCKER_MANIFEST)
    _assert_manifest(images.get(digest, accept=DOCKER_MANIFEST), content, DOCKER_LIST)
    _assert_manifest(images.get("noamd64", accept=DOCKER_LIST), content, DOCKER_LIST)


def test_docker_list_for_a_client_of_neither(images):
    """A client that takes neither lists nor schema 2 gets no schema 1 rewrite."""
    content, _ = _platform_list(images, [{"os": "linux", "architecture": "amd64"}])
    digest = images.push("neither", content)
    for accept in ("application/json", None):
        assert_error(images.get("neither", accept=accept), 400, "MANIFEST_INVALID")
        _assert_manifest(images.get(digest, accept=accept), content, DOCKER_LIST)


# -- invalid manifests -----------------------------------------------------------------

GOOD_CONFIG = descriptor(OCI_CONFIG, b"config")
GOOD_LAYER = descriptor(OCI_LAYER, b"layer")


def _oci(**fields):
    document = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": GOOD_CONFIG}
    document["layers"] = [GOOD_LAYER]
    document.update(fields)
    return {key: value for key, value in document.items() if value is not None}


INVALID = {
    "empty": (b"", OCI_MANIFEST),
    "not-json": (b"{not json", OCI_MANIFEST),
    "truncated": (encode(_oci())[:-1], OCI_MANIFEST),
    "not-utf8": (b'{"schemaVersion": 2, "\xff": 1}', OCI_MANIFEST),
    "array": (b"[]", OCI_MANIFEST),
    "string": (b'"manifest"', OCI_MANIFEST),
    "null": (b"null", OCI_MANIFEST),
    "schema-1": (encode(_oci(schemaVersion=1)), OCI_MANIFEST),
    "schema-1-document": (
        encode({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}),
        SCHEMA1,
    ),
    "schema-1-content-type": (encode(_oci(mediaType=None)), SCHEMA1),
    "schema-1-signed-content-type": (encode(_oci(mediaType=None)), SCHEMA1_SIGNED),
    "schema-1-media-type": (encode(_oci(mediaType=SCHEMA1)), "application/json"),
    "no-schema-version": (encode(_oci(schemaVersion=None)), OCI_MANIFEST),
    "schema-version-3": (encode(_oci(schemaVersion=3)), OCI_MANIFEST),
    "schema-version-string": (encode(_oci(schemaVersion="2")), OCI_MANIFEST),
    "schema-version-true": (encode(_oci(schemaVersion=True)), OCI_MANIFEST),
    "media-type-not-content-type": (encode(_oci()), DOCKER_MANIFEST),
    "docker-media-type-as-oci": (encode(_oci(mediaType=DOCKER_MANIFEST)), OCI_MANIFEST),
    "media-type-not-a-string": (encode(_oci(mediaType=7)), OCI_MANIFEST),
    "unknown-media-type": (encode(_oci(mediaType="application/x-other")), "application/json"),
    "unknown-shape": (b'{"schemaVersion": 2}', "application/json"),
    "docker-without-media-type": (encode(_oci(mediaType=None)), DOCKER_MANIFEST),
    "docker-list-without-media-type": (
        encode({"schemaVersion": 2, "manifests": []}),
        DOCKER_LIST,
    ),
    "no-config": (encode(_oci(config=None)), OCI_MANIFEST),
    "config-not-object": (encode(_oci(config="sha256:" + "a" * 64)), OCI_MANIFEST),
    "config-without-media-type": (
        encode(_oci(config={"digest": GOOD_CONFIG["digest"], "size": 6})),
        OCI_MANIFEST,
    ),
    "config-without-digest": (
        encode(_oci(config={"mediaType": OCI_CONFIG, "size": 6})),
        OCI_MANIFEST,
    ),
    "no-layers": (encode(_oci(layers=None)), OCI_MANIFEST),
    "layers-not-list": (encode(_oci(layers=GOOD_LAYER)), OCI_MANIFEST),
    "layer-not-object": (encode(_oci(layers=[GOOD_LAYER["digest"]])), OCI_MANIFEST),
    "bad-digest": (encode(_oci(layers=[{**GOOD_LAYER, "digest": "sha256:xyz"}])), OCI_MANIFEST),
    "digest-wrong-length": (
        encode(_oci(layers=[{**GOOD_LAYER, "digest": "sha256:" + "a" * 63}])),
        OCI_MANIFEST,
    ),
    "digest-unsupported-algorithm": (
        encode(_oci(layers=[{**GOOD_LAYER, "digest": "md5:" + "a" * 32}])),
        OCI_MANIFEST,
    ),
    "digest-not-string": (encode(_oci(layers=[{**GOOD_LAYER, "digest": 5}])), OCI_MANIFEST),
    "negative-size": (encode(_oci(layers=[{**GOOD_LAYER, "size": -1}])), OCI_MANIFEST),
    "string-size": (encode(_oci(layers=[{**GOOD_LAYER, "size": "5"}])), OCI_MANIFEST),
    "float-size": (encode(_oci(layers=[{**GOOD_LAYER, "size": 5.5}])), OCI_MANIFEST),
    "boolean-size": (encode(_oci(layers=[{**GOOD_LAYER, "size": True}])), OCI_MANIFEST),
    "no-size": (
        encode(_oci(layers=[{"mediaType": OCI_LAYER, "digest": GOOD_LAYER["digest"]}])),
        OCI_MANIFEST,
    ),
    "urls-not-list": (
        encode(_oci(layers=[{**GOOD_LAYER, "urls": "https://x.example/"}])),
        OCI_MANIFEST,
    ),
    "platform-not-object": (
        encode(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [{**descriptor(OCI_MANIFEST, b"m"), "platform": "linux/amd64"}],
            }
        ),
        OCI_INDEX,
    ),
    "annotations-not-strings": (encode(_oci(annotations={"a": 1})), OCI_MANIFEST),
    "annotations-not-object": (encode(_oci(annotations=["a"])), OCI_MANIFEST),
    "artifact-type-not-string": (encode(_oci(artifactType=["x"])), OCI_MANIFEST),
    "subject-not-descriptor": (encode(_oci(subject="sha256:" + "a" * 64)), OCI_MANIFEST),
    "index-without-manifests": (encode({"schemaVersion": 2, "mediaType": OCI_INDEX}), OCI_INDEX),
    "index-manifests-not-list": (
        encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": {}}),
        OCI_INDEX,
    ),
    "index-as-manifest": (
        encode({"schemaVersion": 2, "manifests": []}),
        OCI_MANIFEST,
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_manifest(images, case):
    content, content_type = INVALID[case]
    for reference in ("invalid", sha256(content)):
        response = images.put(reference, content, content_type)
        assert_error(response, 400, "MANIFEST_INVALID")
    assert not images.revision_link(sha256(content)).exists()
    assert not images.tags_dir().exists()
    _assert_unknown(images, "invalid")


def test_manifest_too_large(images):
    """Up to 4 MiB is taken, padding and all; one byte more is 413."""
    document = encode(json.loads(images.image()))
    content = document + b" " * (MAX_MANIFEST_SIZE - len(document))
    assert len(content) == MAX_MANIFEST_SIZE
    images.push("largest", content)
    _assert_manifest(images.get("largest"), content, OCI_MANIFEST)
    too_large = content + b" "
    response = images.put("too-large", too_large)
    assert_error(response, 413, "MANIFEST_INVALID")
    assert_error(images.put(sha256(too_large), too_large), 413, "MANIFEST_INVALID")
    _assert_not_stored(images, too_large)
    _assert_unknown(images, "too-large")


# -- what a manifest references ------------------------------------------------------


def test_unknown_blobs(images):
    """One error per blob the repository lacks; nothing stored."""
    config = descriptor(OCI_CONFIG, os.urandom(10))
    present = images.blob(OCI_LAYER)
    missing = descriptor(OCI_LAYER, os.urandom(10))
    content = encode(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": [present, missing],
        }
    )
    for reference in ("tagged", sha256(content)):
        response = images.put(reference, content)
        assert_error(response, 400, "MANIFEST_BLOB_UNKNOWN", "MANIFEST_BLOB_UNKNOWN")
        assert error_details(response) == [config["digest"], missing["digest"]]
    _assert_not_stored(images, content)
    _assert_unknown(images, "tagged")
    assert not images.tags_dir().exists()


def test_unknown_blobs_then_pushed(registry, images, repo):
    config_data, layer_data = os.urandom(20), os.urandom(30)
    content = encode(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": descriptor(DOCKER_CONFIG, config_data),
            "layers": [descriptor(DOCKER_LAYER, layer_data)],
        }
    )
    response = images.put("later", content)
    assert_error(response, 400, "MANIFEST_BLOB_UNKNOWN", "MANIFEST_BLOB_UNKNOWN")
    registry.push(repo, config_data)
    response = images.put("later", content)
    assert_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert error_details(response) == [sha256(layer_data)]
    registry.push(repo, layer_data)
    images.push("later", content)
    _assert_manifest(images.get("later"), content, DOCKER_MANIFEST)


def test_blobs_of_another_repository_do_not_count(registry, images, repo):
    other = Images(registry, f"{repo}-other")
    content = other.image(layers=2)
    other.push("there", content)
    response = images.put("here", content)
    assert_error(response, 400, *["MANIFEST_BLOB_UNKNOWN"] * 3)
    document = json.loads(content)
    expected = [document["config"]["digest"]] + [layer["digest"] for layer in document["layers"]]
    assert error_details(response) == expected
    _assert_unknown(images, sha256(content))
    # Mounted into this repository, they count.
    for digest in expected:
        mounted = registry.request(
            "POST", f"{repo}/blobs/uploads/?mount={digest}&from={repo}-other"
        )
        assert mounted.status == 201, mounted.body
    images.push("here", content)
    _assert_manifest(images.get("here"), content, OCI_MANIFEST)


def test_index_of_unknown_manifests(registry, images, repo):
    known = images.image()
    images.push(sha256(known), known)
    unpushed = images.image()
    elsewhere = Images(registry, f"{repo}-other")
    foreign = elsewhere.image()
    elsewhere.push(sha256(foreign), foreign)
    blob = images.blob(OCI_LAYER)
    for media_type in (OCI_INDEX, DOCKER_LIST):
        content = images.index(
            [(known, None), (unpushed, None), (foreign, None)], media_type, child_type=OCI_MANIFEST
        )
        response = images.put("index", content)
        assert_error(response, 400, "MANIFEST_BLOB_UNKNOWN", "MANIFEST_BLOB_UNKNOWN")
        assert error_details(response) == [sha256(unpushed), sha256(foreign)]
        _assert_not_stored(images, content)
    # A blob of the repository is no manifest of it.
    content = encode(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{**blob, "mediaType": OCI_MANIFEST}],
        }
    )
    response = images.put("index", content)
    assert_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert error_details(response) == [blob["digest"]]
    _assert_unknown(images, "index")


def test_empty_index_needs_nothing(images):
    content = images.index([])
    images.push("empty", content)
    _assert_manifest(images.get("empty"), content, OCI_INDEX)


# -- foreign layers ------------------------------------------------------------------


def _foreign_image(images, urls, media_type=OCI_MANIFEST, layer_type=None):
    """An image whose second layer is foreign (never pushed) at C{urls}."""
    docker = media_type == DOCKER_MANIFEST
    config = images.blob(DOCKER_CONFIG if docker else OCI_CONFIG)
    local = images.blob(DOCKER_LAYER if docker else OCI_LAYER)
    layer_type = layer_type or (DOCKER_FOREIGN_LAYER if docker else OCI_FOREIGN_LAYER)
    foreign = descriptor(layer_type, os.urandom(40), urls=urls)
    content = encode(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": config,
            "layers": [local, foreign],
        }
    )
    return content, foreign["digest"]


def _assert_foreign_refused(images, content, foreign_digest):
    response = images.put("foreign", content)
    assert_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert error_details(response) == [foreign_digest]
    _assert_not_stored(images, content)


def _assert_foreign_taken(images, content):
    digest = images.push(sha256(content), content)
    _assert_manifest(images.get(digest), content, json.loads(content)["mediaType"])


def test_foreign_layers_refused_by_default(images):
    """Distribution 2.7 and later allow no foreign URL unless configured."""
    for media_type in (OCI_MANIFEST, DOCKER_MANIFEST):
        content, foreign = _foreign_image(
            images, ["https://foreign.example/layer.tar.gz"], media_type
        )
        _assert_foreign_refused(images, content, foreign)


ALLOW_FOREIGN = {
    "validation": {
        "manifests": {
            "urls": {
                "allow": [r"^https://foreign\.example/"],
                "deny": [r"^https://foreign\.example/private/"],
            }
        }
    }
}


def test_foreign_layers_allowed_by_configuration(start_registry_with):
    images = Images(start_registry_with(ALLOW_FOREIGN), "foreign/allowed")
    for media_type in (OCI_MANIFEST, DOCKER_MANIFEST):
        content, _ = _foreign_image(images, ["https://foreign.example/layer.tar.gz"], media_type)
        _assert_foreign_taken(images, content)
    content, _ = _foreign_image(
        images, ["https://foreign.example/a.tar.gz", "https://foreign.example/b/c.tar.gz"]
    )
    _assert_foreign_taken(images, content)
    # Any layer type, distributable or not, may be foreign.
    content, _ = _foreign_image(images, ["https://foreign.example/x"], layer_type=OCI_LAYER)
    _assert_foreign_taken(images, content)
    refused = [
        ["https://other.example/layer.tar.gz"],
        ["http://foreign.example/layer.tar.gz"],
        ["https://foreign.example.evil/layer.tar.gz"],
        ["https://foreign.example/private/layer.tar.gz"],
        ["https://foreign.example/layer.tar.gz#fragment"],
        ["https://foreign.example/ok.tar.gz", "https://other.example/no.tar.gz"],
    ]
    for urls in refused:
        content, foreign = _foreign_image(images, urls)
        _assert_foreign_refused(images, content, foreign)
    # Content other than a layer is never fetched from elsewhere.
    content, foreign = _foreign_image(
        images, ["https://foreign.example/config.json"], layer_type=OCI_CONFIG
    )
    _assert_foreign_refused(images, content, foreign)


def test_foreign_layers_with_validation_disabled(start_registry_with):
    images = Images(start_registry_with({"validation": {"disabled": True}}), "foreign/any")
    for urls in (["https://anywhere.example/l.tgz"], ["http://10.0.0.1:8080/l.tgz"]):
        content, _ = _foreign_image(images, urls)
        _assert_foreign_taken(images, content)
    for urls in (["ftp://anywhere.example/l.tgz"], ["https://a.example/l#x"], ["not a url"]):
        content, foreign = _foreign_image(images, urls)
        _assert_foreign_refused(images, content, foreign)


# -- subjects ------------------------------------------------------------------------


def test_oci_subject_header(images):
    subject = images.image()  # never pushed: a subject need not exist
    content = images.artifact(subject=subject)
    response = images.put("signature", content)
    assert response.status == 201, response.body
    assert response.header("OCI-Subject") == sha256(subject)
    _assert_manifest(images.get("signature"), content, OCI_MANIFEST)
    plain = images.image()
    assert images.put("plain", plain).header("OCI-Subject") is None


# -- deleting ------------------------------------------------------------------------


def test_delete_by_digest_removes_its_tags(registry, images):
    content = images.image()
    kept = images.image()
    digest = images.push("one", content)
    images.push("two", content)
    images.push("three", kept)
    assert images.tags().json()["tags"] == ["one", "three", "two"]
    response = images.delete(digest)
    assert response.status == 202, response.body
    assert response.header("Content-Length") == "0"
    assert images.tags().json()["tags"] == ["three"]
    for reference in (digest, "one", "two"):
        _assert_unknown(images, reference)
    _assert_manifest(images.get("three"), kept, OCI_MANIFEST)
    # The bytes stay until garbage collection; the repository no longer has them.
    assert registry.blob_file(digest).read_bytes() == content
    assert not images.revision_link(digest).exists()
    assert_error(images.delete(digest), 404, "MANIFEST_UNKNOWN")
    # Pushed again, it is back.
    images.push("again", content)
    _assert_manifest(images.get(digest), content, OCI_MANIFEST)


def test_delete_by_tag_removes_only_the_tag(images):
    content = images.image()
    digest = images.push("one", content)
    images.push("two", content)
    response = images.delete("one")
    assert response.status == 202, response.body
    _assert_unknown(images, "one")
    _assert_manifest(images.get(digest), content, OCI_MANIFEST)
    _assert_manifest(images.get("two"), content, OCI_MANIFEST)
    assert images.tags().json()["tags"] == ["two"]
    assert_error(images.delete("one"), 404, "MANIFEST_UNKNOWN")


def test_delete_unknown(images, repo):
    for reference in (MISSING, "nosuchtag"):
        assert_error(images.delete(reference), 404, "MANIFEST_UNKNOWN")
    images.push("present", images.image())
    for reference in (MISSING, "nosuchtag"):
        assert_error(images.delete(reference), 404, "MANIFEST_UNKNOWN")
    other = images.registry.request("DELETE", f"{repo}-other/manifests/present")
    assert_error(other, 404, "MANIFEST_UNKNOWN")


def test_delete_referenced_by_an_index(images):
    """Distribution lets a manifest go though an index names it; so does txregistry."""
    child = images.image()
    child_digest = images.push(sha256(child), child)
    index = images.index([(child, None)])
    images.push("index", index)
    assert images.delete(child_digest).status == 202
    _assert_manifest(images.get("index"), index, OCI_INDEX)
    _assert_unknown(images, child_digest)


def test_delete_disabled(start_registry):
    server = start_registry(delete=False)
    images = Images(server, "no/deletes")
    content = images.image()
    digest = images.push("kept", content)
    for reference in (digest, "kept", MISSING, "nosuchtag"):
        assert_error(images.delete(reference), 405, "UNSUPPORTED")
    _assert_manifest(images.get("kept"), content, OCI_MANIFEST)
    _assert_manifest(images.get(digest), content, OCI_MANIFEST)


def test_readonly(registry, images, repo, start_registry):
    content = images.image()
    digest = images.push("before", content)
    readonly = Images(start_registry(root=registry.root, readonly=True), repo)
    _assert_manifest(readonly.get("before"), content, OCI_MANIFEST)
    _assert_manifest(readonly.get(digest, method="HEAD"), content, OCI_MANIFEST, method="HEAD")
    other = images.image()
    for reference in ("after", "before", sha256(other)):
        assert_error(readonly.put(reference, other), 405, "UNSUPPORTED")
    for reference in (digest, "before", MISSING):
        assert_error(readonly.delete(reference), 405, "UNSUPPORTED")
    _assert_not_stored(images, other)
    _assert_manifest(images.get("before"), content, OCI_MANIFEST)
    assert readonly.tags().json() == {"name": repo, "tags": ["before"]}
