"""
In-process tests of what the manifest API is built on:
L{txregistry.registry.manifest_formats.parse_manifest} (media types, the
structure of each kind, artifact types), L{accepted_media_types}, and
L{txregistry.registry.manifests.URLPolicy}.
"""

from __future__ import annotations

import json

import pytest

from txregistry.digest import Digest
from txregistry.errors import MANIFEST_INVALID, RegistryError
from txregistry.registry.manifest_formats import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MAX_MANIFEST_SIZE,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    accepted_media_types,
    parse_manifest,
)
from txregistry.registry.manifests import ParsedManifests, URLPolicy

CONFIG = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "c" * 64}
CONFIG["size"] = 7
LAYER = {
    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
    "digest": "sha512:" + "d" * 128,
    "size": 0,
}
CHILD = {
    "mediaType": OCI_MANIFEST,
    "digest": "sha256:" + "e" * 64,
    "size": 512,
    "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
}
EMPTY = {
    "mediaType": "application/vnd.oci.empty.v1+json",
    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    "size": 2,
}


def _bytes(document):
    return json.dumps(document).encode()


def _image(media_type=OCI_MANIFEST, **fields):
    document = {"schemaVersion": 2, "mediaType": media_type, "config": CONFIG, "layers": [LAYER]}
    document.update(fields)
    return {key: value for key, value in document.items() if value is not None}


def _index(media_type=OCI_INDEX, **fields):
    document = {"schemaVersion": 2, "mediaType": media_type, "manifests": [CHILD]}
    document.update(fields)
    return {key: value for key, value in document.items() if value is not None}


def _invalid(content, content_type=None):
    with pytest.raises(RegistryError) as raised:
        parse_manifest(content, content_type)
    assert raised.value.error_code is MANIFEST_INVALID
    assert raised.value.status == 400
    return raised.value.detail


# -- parsing each kind -------------------------------------------------------------


def test_oci_image_manifest():
    content = _bytes(_image(annotations={"k": "v"}))
    manifest = parse_manifest(content, OCI_MANIFEST)
    assert manifest.media_type == OCI_MANIFEST
    assert manifest.content is content
    assert manifest.digest == Digest.of(content)
    assert not manifest.is_index
    assert manifest.config == Descriptor(CONFIG["mediaType"], Digest("sha256", "c" * 64), 7)
    assert manifest.layers == (Descriptor(LAYER["mediaType"], Digest("sha512", "d" * 128), 0),)
    assert manifest.manifests == ()
    assert manifest.subject is None
    assert manifest.annotations == {"k": "v"}
    assert manifest.artifact_type == CONFIG["mediaType"]


def test_oci_index():
    content = _bytes(_index(artifactType="application/vnd.example.bundle"))
    manifest = parse_manifest(content, OCI_INDEX)
    assert manifest.media_type == OCI_INDEX
    assert manifest.is_index
    assert manifest.config is None
    assert manifest.layers == ()
    (child,) = manifest.manifests
    assert child.media_type == OCI_MANIFEST
    assert child.digest == Digest("sha256", "e" * 64)
    assert child.size == 512
    assert child.platform == {"os": "linux", "architecture": "arm64", "variant": "v8"}
    assert manifest.artifact_type == "application/vnd.example.bundle"


def test_index_without_artifact_type_has_none():
    assert parse_manifest(_bytes(_index()), OCI_INDEX).artifact_type is None


def test_docker_manifest_and_list():
    image = parse_manifest(_bytes(_image(DOCKER_MANIFEST)), DOCKER_MANIFEST)
    assert image.media_type == DOCKER_MANIFEST
    assert not image.is_index
    listing = parse_manifest(_bytes(_index(DOCKER_MANIFEST_LIST)), DOCKER_MANIFEST_LIST)
    assert listing.media_type == DOCKER_MANIFEST_LIST
    assert listing.is_index
    assert listing.manifests[0].platform["architecture"] == "arm64"


def test_artifact_manifest():
    subject = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "f" * 64, "size": 99}
    content = _bytes(
        _image(
            artifactType="application/vnd.example.sbom",
            config=EMPTY,
            subject=subject,
            annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
        )
    )
    manifest = parse_manifest(content, OCI_MANIFEST)
    assert manifest.artifact_type == "application/vnd.example.sbom"
    assert manifest.config.media_type == "application/vnd.oci.empty.v1+json"
    assert manifest.subject == Descriptor(OCI_MANIFEST, Digest("sha256", "f" * 64), 99)
    entry = manifest.descriptor()
    assert entry == Descriptor(
        OCI_MANIFEST,
        Digest.of(content),
        len(content),
        artifact_type="application/vnd.example.sbom",
        annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    )
    assert entry.to_json() == {
        "mediaType": OCI_MANIFEST,
        "digest": str(Digest.of(content)),
        "size": len(content),
        "artifactType": "application/vnd.example.sbom",
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }


def test_descriptor_json_leaves_out_what_is_absent():
    manifest = parse_manifest(_bytes(_index(annotations={})), OCI_INDEX)
    assert manifest.descriptor().to_json() == {
        "mediaType": OCI_INDEX,
        "digest": str(manifest.digest),
        "size": len(manifest.content),
    }


def test_descriptor_fields():
    layer = dict(LAYER, urls=["https://a.example/x"], annotations={"a": "b"})
    layer["artifactType"] = "application/vnd.example.thing"
    manifest = parse_manifest(_bytes(_image(layers=[layer])), OCI_MANIFEST)
    (parsed,) = manifest.layers
    assert parsed.urls == ("https://a.example/x",)
    assert parsed.annotations == {"a": "b"}
    assert parsed.artifact_type == "application/vnd.example.thing"
    assert parsed.platform is None


def test_null_subject_and_urls_are_absent():
    manifest = parse_manifest(_bytes(_image(subject=None, layers=[dict(LAYER, urls=None)])))
    assert manifest.subject is None
    assert manifest.layers[0].urls == ()
    content = _bytes({**_image(), "subject": None})
    assert parse_manifest(content).subject is None


def test_bytes_kept_exactly():
    content = b'  {"layers":[],  "config" : %s,\n"schemaVersion":2}\r\n' % _bytes(CONFIG)
    manifest = parse_manifest(content, OCI_MANIFEST)
    assert manifest.content == content
    assert manifest.digest == Digest.of(content)


def test_size_limit():
    document = _bytes(_image())
    largest = document + b" " * (MAX_MANIFEST_SIZE - len(document))
    assert parse_manifest(largest, OCI_MANIFEST).content == largest
    assert "larger than" in _invalid(largest + b" ", OCI_MANIFEST)


# -- which media type ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "content_type", "expected"),
    [
        (_image(), OCI_MANIFEST, OCI_MANIFEST),
        (_image(), None, OCI_MANIFEST),
        (_image(), "application/json", OCI_MANIFEST),
        (_image(mediaType=None), OCI_MANIFEST, OCI_MANIFEST),
        (_image(mediaType=None), None, OCI_MANIFEST),
        (_image(mediaType=None), "application/octet-stream", OCI_MANIFEST),
        (_index(mediaType=None), None, OCI_INDEX),
        (_index(mediaType=None), OCI_INDEX, OCI_INDEX),
        (_index(), None, OCI_INDEX),
        (_image(DOCKER_MANIFEST), None, DOCKER_MANIFEST),
        (_image(DOCKER_MANIFEST), DOCKER_MANIFEST, DOCKER_MANIFEST),
        (_image(DOCKER_MANIFEST), "text/plain", DOCKER_MANIFEST),
        (_index(DOCKER_MANIFEST_LIST), None, DOCKER_MANIFEST_LIST),
        (_index(DOCKER_MANIFEST_LIST), DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_LIST),
    ],
)
def test_media_type(document, content_type, expected):
    assert parse_manifest(_bytes(document), content_type).media_type == expected


@pytest.mark.parametrize(
    ("document", "content_type", "words"),
    [
        (_image(), DOCKER_MANIFEST, "does not match"),
        (_image(DOCKER_MANIFEST), OCI_MANIFEST, "does not match"),
        (_index(), DOCKER_MANIFEST_LIST, "does not match"),
        (_image(mediaType=None), DOCKER_MANIFEST, "mediaType must be"),
        (_index(mediaType=None), DOCKER_MANIFEST_LIST, "mediaType must be"),
        (_image(mediaType="application/x-unknown"), None, "unsupported"),
        (_image(mediaType="application/x-unknown"), "application/json", "unsupported"),
        ({"schemaVersion": 2}, None, "unsupported"),
        ({"schemaVersion": 2}, "application/json", "unsupported"),
        (
            _image(mediaType=None),
            "application/vnd.docker.distribution.manifest.v1+json",
            "schema 1",
        ),
        (
            _image(mediaType=None),
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            "schema 1",
        ),
        (_image("application/vnd.docker.distribution.manifest.v1+json"), None, "schema 1"),
        (_image(schemaVersion=1), OCI_MANIFEST, "schema 1"),
        (_image(mediaType=None), OCI_INDEX, "manifests must be a list"),
        (_index(mediaType=None), OCI_MANIFEST, "config is required"),
    ],
)
def test_media_type_refused(document, content_type, words):
    assert words in _invalid(_bytes(document), content_type)


# -- structure -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (b"", "JSON"),
        (b"\xff\xfe\x00", "JSON"),
        (b"{", "JSON"),
        (b"[]", "object"),
        (b"2", "object"),
        (_bytes(_image(schemaVersion=None)), "schemaVersion"),
        (_bytes(_image(schemaVersion=3)), "schemaVersion"),
        (_bytes(_image(schemaVersion="2")), "schemaVersion"),
        (_bytes(_image(schemaVersion=2.5)), "schemaVersion"),
        (_bytes(_image(mediaType=2)), "mediaType"),
        (_bytes(_image(config=None)), "config"),
        (_bytes(_image(config=[])), "config"),
        (_bytes(_image(layers=None)), "layers"),
        (_bytes(_image(layers={})), "layers"),
        (_bytes(_image(layers=[LAYER, "x"])), "layers[1]"),
        (_bytes(_image(layers=[dict(LAYER, mediaType=None)])), "layers[0].mediaType"),
        (_bytes(_image(layers=[dict(LAYER, mediaType="")])), "layers[0].mediaType"),
        (_bytes(_image(layers=[dict(LAYER, mediaType=1)])), "layers[0].mediaType"),
        (_bytes(_image(layers=[dict(LAYER, digest=None)])), "layers[0].digest"),
        (_bytes(_image(layers=[dict(LAYER, digest="sha256:abc")])), "layers[0].digest"),
        (_bytes(_image(layers=[dict(LAYER, digest="sha1:" + "a" * 40)])), "layers[0].digest"),
        (_bytes(_image(layers=[dict(LAYER, digest="SHA256:" + "a" * 64)])), "layers[0].digest"),
        (_bytes(_image(layers=[dict(LAYER, size=-1)])), "layers[0].size"),
        (_bytes(_image(layers=[dict(LAYER, size="1")])), "layers[0].size"),
        (_bytes(_image(layers=[dict(LAYER, size=1.0)])), "layers[0].size"),
        (_bytes(_image(layers=[dict(LAYER, size=False)])), "layers[0].size"),
        (_bytes(_image(layers=[dict(LAYER, size=None)])), "layers[0].size"),
        (_bytes(_image(layers=[dict(LAYER, urls="https://x")])), "layers[0].urls"),
        (_bytes(_image(layers=[dict(LAYER, urls=[1])])), "layers[0].urls"),
        (_bytes(_image(layers=[dict(LAYER, artifactType=1)])), "layers[0].artifactType"),
        (_bytes(_image(layers=[dict(LAYER, annotations={"a": 1})])), "layers[0].annotations"),
        (_bytes(_image(config=dict(CONFIG, size=-5))), "config.size"),
        (_bytes(_image(annotations={"a": None})), "annotations"),
        (_bytes(_image(annotations="a=b")), "annotations"),
        (_bytes(_image(artifactType={})), "artifactType"),
        (_bytes(_image(subject="sha256:" + "a" * 64)), "subject"),
        (_bytes(_image(subject=dict(CONFIG, digest="nope"))), "subject.digest"),
        (_bytes(_index(manifests=None)), "manifests"),
        (_bytes(_index(manifests=CHILD)), "manifests"),
        (_bytes(_index(manifests=[CHILD, None])), "manifests[1]"),
        (_bytes(_index(manifests=[dict(CHILD, platform="linux")])), "manifests[0].platform"),
        (_bytes(_index(manifests=[dict(CHILD, size=-1)])), "manifests[0].size"),
        # Strict JSON, as Go reads it; each of these was accepted, then a 500
        # (RecursionError; orjson refusing to encode the event's references).
        (b"[" * 100_000, "JSON"),
        (b'{"config":' * 100_000, "JSON"),
        (_bytes(_image(layers=[dict(LAYER, mediaType="a\ud800")])), "JSON"),
        (_bytes(_image(annotations={"a": "\udc00"})), "JSON"),
        (_bytes(_image(layers=[dict(LAYER, size=2**64)])), "layers[0].size"),
        (_bytes(_image(config=dict(CONFIG, size=10**400))), "JSON"),
        (_bytes(_image(platform={"x": float("nan")})), "JSON"),
    ],
)
def test_invalid_structure(content, where):
    assert where in _invalid(content, None)


def test_no_layers_is_fine():
    assert parse_manifest(_bytes(_image(layers=[])), OCI_MANIFEST).layers == ()


def test_empty_index_is_fine():
    assert parse_manifest(_bytes(_index(manifests=[])), OCI_INDEX).manifests == ()


# -- Accept ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], set()),
        ([""], set()),
        ([" , ,"], set()),
        ([OCI_MANIFEST], {OCI_MANIFEST}),
        (
            [f"{OCI_MANIFEST}, {DOCKER_MANIFEST};q=0.5", "*/*;q=0.1"],
            {OCI_MANIFEST, DOCKER_MANIFEST, "*/*"},
        ),
        ([f"  {OCI_INDEX.upper()} ; q=1 ,text/html"], {OCI_INDEX, "text/html"}),
        ([f"{OCI_INDEX};profile=x;q=0"], {OCI_INDEX}),
    ],
)
def test_accepted_media_types(headers, expected):
    assert accepted_media_types(headers) == expected


# -- foreign layer URLs ------------------------------------------------------------


def test_default_policy_permits_nothing():
    """Validation enabled with no allow list: Distribution allows no URL."""
    policy = URLPolicy.from_config(False, [], [])
    for url in ("https://foreign.example/l", "http://x/", "https://"):
        assert not policy.permits(url)


def test_disabled_validation_permits_any_http_url():
    policy = URLPolicy.from_config(True, [r"^https://only\.example/"], [".*"])
    for url in ("https://anything.example/l.tgz", "http://10.1.2.3:8080/x", "HTTPS://a.example/"):
        assert policy.permits(url), url
    for url in ("ftp://a.example/l", "file:///etc/passwd", "https://a.example/l#frag", "no url"):
        assert not policy.permits(url), url
    assert not policy.permits("")
    assert not policy.permits("http://[::1")


def test_allow_and_deny():
    policy = URLPolicy.from_config(
        False,
        [r"^https://a\.example/", r"^https://b\.example/"],
        [r"/private/", r"\.exe$"],
    )
    assert policy.permits("https://a.example/layer.tgz")
    assert policy.permits("https://b.example/x/y")
    assert not policy.permits("https://c.example/layer.tgz")
    assert not policy.permits("http://a.example/layer.tgz")
    assert not policy.permits("https://a.example/private/layer.tgz")
    assert not policy.permits("https://b.example/tool.exe")
    assert not policy.permits("https://a.example/layer.tgz#part")
    assert not policy.permits("ftp://a.example/")


def test_patterns_search_anywhere():
    """As Go's MatchString: an unanchored pattern matches anywhere in the URL."""
    policy = URLPolicy.from_config(False, [r"example\.com"], [r"evil"])
    assert policy.permits("https://cdn.example.com/l")
    assert policy.permits("https://other.test/?mirror=example.com")
    assert not policy.permits("https://example.com/evil/l")


def test_patterns_with_flags():
    """
    Each pattern may set its own flags: joined into one pattern, as they
    were, a second pattern's (?i) was a re.error at start-up.
    """
    allow = [r"^https://a\.example/", r"(?i)^https://B\.example/"]
    policy = URLPolicy.from_config(False, allow, [r"(?i)\.EXE$"])
    assert policy.permits("https://a.example/l.tgz")
    assert policy.permits("https://b.example/l.tgz")
    assert not policy.permits("https://A.example/l.tgz")
    assert not policy.permits("https://a.example/tool.exe")


def test_allow_list_without_deny_list():
    policy = URLPolicy.from_config(False, ["^https://"], [])
    assert policy.deny is None
    assert policy.permits("https://x.example/a")
    assert not policy.permits("http://x.example/a")


# -- the parsed-manifest cache -------------------------------------------------------


def test_parsed_manifests_cache_is_bounded():
    cache = ParsedManifests(limit=2)
    manifests = [parse_manifest(_bytes(_image(annotations={"n": str(n)}))) for n in range(3)]
    cache.put(manifests[0])
    cache.put(manifests[1])
    assert cache.get(manifests[0].digest) is manifests[0]  # now the most recent
    cache.put(manifests[2])
    assert cache.get(manifests[1].digest) is None
    assert cache.get(manifests[0].digest) is manifests[0]
    assert cache.get(manifests[2].digest) is manifests[2]


def test_parsed_manifests_cache_bounded_in_bytes():
    """Past its byte limit, the least recently used go; a manifest above it is not kept."""
    manifests = [parse_manifest(_bytes(_image(annotations={"n": str(n)}))) for n in range(4)]
    size = len(manifests[0].content)
    cache = ParsedManifests(limit=100, byte_limit=2 * size + size // 2)
    for manifest in manifests[:3]:
        cache.put(manifest)
    assert len(cache) == 2
    assert cache.get(manifests[0].digest) is None
    cache.put(manifests[1])  # again: counted once, now the most recent
    cache.put(manifests[3])
    assert [cache.get(m.digest) is m for m in manifests] == [False, True, False, True]
    big = parse_manifest(_bytes(_image(annotations={"n": "x" * (3 * size)})))
    cache.put(big)
    assert cache.get(big.digest) is None
    assert len(cache) == 2
