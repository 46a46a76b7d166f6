"""
txregistry side by side with the reference registry, Distribution 2.8
(C{docker-registry}): both run on 127.0.0.1, each over its own storage
root and with the same config (the same C{http.secret}, C{http.headers}
and C{catalog.maxentries}), and get the same sequence of requests, L{Step}s:
push an image by HTTP (blobs; an OCI manifest, a Docker schema 2 manifest,
an OCI index and a Docker manifest list), pull it back by tag and by digest
with the Accept headers clients send, push invalid manifests, list tags and
the catalog page by page, use the referrers API, delete; and, on a second
pair of processes with C{storage.delete.enabled: false}, delete again.
What the two answer is diffed step by step:

  - the status code;
  - the set of response header names (C{Date}, C{Server} and transport
    headers ignored) and their values, C{Location} and C{Link} with the
    origin and upload state normalised, C{Docker-Upload-UUID} by name only;
    C{Content-Length} only where the bodies are the same bytes, and on a
    successful C{HEAD};
  - the body: JSON parsed and compared (the reference's tag list sorted
    first: Distribution 2.8 lists tags in the order the disk lists the
    folder); for OCI error bodies the C{code} and C{message} of each error
    (C{detail} is free-form and never compared); anything else byte for
    byte.

The test fails on any difference that L{allowlist} does not name (each of
its entries gives the reason, and what txregistry must answer there), and on
an entry of L{allowlist} that no longer happens.  Run with C{-s} to see the
table; it is also written to C{side-by-side.txt} in the test's tmp folder.

C{SIDE_BY_SIDE_CANDIDATE=reference} runs the reference against itself
instead: the harness's own check, where there must be no difference at all.
C{SIDE_BY_SIDE_VERBOSE=1} adds the reference's headers and body to each
step of the table.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.client
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from clients import require
from txregistry.registry.manifest_formats import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from txregistry.registry.manifest_formats import DOCKER_MANIFEST_LIST as DOCKER_LIST
from txregistry.testing.client import HTTPResponse
from txregistry.testing.process import REFERENCE_BINARY, RegistryProcess, base_config

CANDIDATE = os.environ.get("SIDE_BY_SIDE_CANDIDATE", "txregistry")
assert CANDIDATE in ("txregistry", "reference"), CANDIDATE
VERBOSE = bool(os.environ.get("SIDE_BY_SIDE_VERBOSE"))
SECRET = "side-by-side-secret"
CATALOG_MAX = 5

# -- media types -----------------------------------------------------------------

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
SCHEMA1_JSON = "application/vnd.docker.distribution.manifest.v1+json"
SBOM = "application/vnd.example.sbom"
SIGNATURE = "application/vnd.example.signature"

MISSING = "sha256:" + "0" * 64
NEVER_PUSHED = b"a manifest nobody pushed"

# What clients send when they pull.  Docker sends one Accept line per type.
ACCEPT_DOCKER = [DOCKER_MANIFEST, DOCKER_LIST, OCI_INDEX, OCI_MANIFEST]
ACCEPT_CONTAINERD = ", ".join([DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX, "*/*"])
ACCEPT_SKOPEO = ", ".join(
    [OCI_MANIFEST, OCI_INDEX, DOCKER_LIST, DOCKER_MANIFEST, SCHEMA1, SCHEMA1_JSON]
)
ACCEPT_ALL = ", ".join([DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX])

# -- comparing -------------------------------------------------------------------

# Headers that say nothing about the API.
IGNORED_HEADERS = {"date", "server", "connection", "keep-alive"}
# Headers compared by name only: their values are per process or per upload.
NAME_ONLY_HEADERS = {"docker-upload-uuid"}
# Headers whose values are normalised before comparing.
URL_HEADERS = {"location", "link"}

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="module", autouse=True)
def _reference_installed() -> None:
    require(REFERENCE_BINARY)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def document(value: Any) -> bytes:
    """A manifest's bytes, the way clients indent them."""
    return json.dumps(value, indent=3).encode("utf-8")


def pseudo_random(seed: bytes, size: int) -> bytes:
    """The same bytes on every run: a layer's content."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


# -- steps -----------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """
    One request, sent to both registries.

    @ivar name: unique; what L{allowlist} refers to.
    @ivar target: a path below C{/v2/} (or from C{/} if it starts with
        one), or C{@var}: the C{Location} this side answered to the step
        that captured C{var}.
    @ivar query: appended to the target's query.
    @ivar headers: sent as given, in order; a name may repeat.
    @ivar capture: remember this response's C{Location} as C{capture}.
    @ivar pair: which pair of registries: C{main} or C{nodelete}.
    """

    name: str
    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    query: str = ""
    capture: str | None = None
    pair: str = "main"

    def describe(self) -> str:
        target = self.target if self.target.startswith(("/", "@")) else "/v2/" + self.target
        if self.query:
            target += ("&" if "?" in target else "?") + self.query
        target = re.sub(r"(sha256:[0-9a-f]{12})[0-9a-f]{52}", r"\1...", target)
        text = f"{self.method} {target}"
        return text if len(text) <= 62 else text[:59] + "..."


def content_type(media_type: str) -> tuple[tuple[str, str], ...]:
    return (("Content-Type", media_type),)


@dataclass
class Image:
    """The content pushed: blobs and manifests, the same bytes every run."""

    config: bytes
    layer1: bytes
    layer2: bytes
    oci: bytes
    docker: bytes
    index: bytes
    mlist: bytes
    small: bytes  # a manifest of its own, pushed to several repositories
    artifact: bytes  # an OCI 1.1 artifact whose subject is C{oci}
    orphan: bytes  # an artifact whose subject is not in the registry

    @property
    def orphan_subject(self) -> str:
        return sha256(NEVER_PUSHED)

    @classmethod
    def build(cls) -> Image:
        layer1 = pseudo_random(b"layer one", 3 * 1024 * 1024 + 17)
        layer2 = pseudo_random(b"layer two", 70_001)
        config = document(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Cmd": ["/bin/sh"]},
                "rootfs": {"type": "layers", "diff_ids": [sha256(layer1), sha256(layer2)]},
            }
        )
        oci = document(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, config),
                "layers": [descriptor(OCI_LAYER, layer1), descriptor(OCI_LAYER, layer2)],
            }
        )
        docker = document(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": descriptor(DOCKER_CONFIG, config),
                "layers": [descriptor(DOCKER_LAYER, layer1), descriptor(DOCKER_LAYER, layer2)],
            }
        )
        # The default platform (linux/amd64) is the Docker manifest: what
        # Distribution serves for a list to a client that takes no list.
        platforms = [
            descriptor(DOCKER_MANIFEST, docker, platform={"architecture": "amd64", "os": "linux"}),
            descriptor(OCI_MANIFEST, oci, platform={"architecture": "arm64", "os": "linux"}),
        ]
        index = document({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": platforms})
        mlist = document({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": platforms})
        small = document(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, config),
                "layers": [descriptor(OCI_LAYER, layer2)],
            }
        )
        artifact = document(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": SBOM,
                "config": descriptor(OCI_CONFIG, config),
                "layers": [descriptor(OCI_LAYER, layer2)],
                "subject": descriptor(OCI_MANIFEST, oci),
            }
        )
        orphan = document(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": SIGNATURE,
                "config": descriptor(OCI_CONFIG, config),
                "layers": [descriptor(OCI_LAYER, layer2)],
                "subject": descriptor(OCI_MANIFEST, NEVER_PUSHED),
                "annotations": {"org.example.note": "orphan"},
            }
        )
        return cls(config, layer1, layer2, oci, docker, index, mlist, small, artifact, orphan)


APP = "sbs/app"
GONE = "sbs/gone"
NODELETE = "sbs/nodelete"
# Repositories for the catalog, with one manifest each; with APP and GONE,
# more than CATALOG_MAX.
CATALOG_REPOS = ["sbs/lib/a", "sbs/lib/b", "sbs/lib/c", "sbs/zeta"]
OCTETS = content_type("application/octet-stream")


class Steps(list[Step]):
    """The steps, built in order."""

    def __call__(self, name: str, method: str, target: str, *headers: str, **options: Any) -> None:
        """
        Add a step; C{headers} are C{"Name: value"} strings, C{options} the
        other fields of L{Step}.
        """
        parsed = tuple((line.split(":", 1)[0], line.split(":", 1)[1].strip()) for line in headers)
        self.append(Step(name, method, target, parsed + options.pop("headers", ()), **options))

    def push_blob(self, name: str, repository: str, data: bytes, pair: str = "main") -> None:
        """A POST, then a PUT with the whole blob."""
        variable = f"upload-{name}"
        self(f"{name}.post", "POST", f"{repository}/blobs/uploads/", capture=variable, pair=pair)
        self(
            f"{name}.put",
            "PUT",
            f"@{variable}",
            headers=OCTETS,
            body=data,
            query=f"digest={sha256(data)}",
            pair=pair,
        )

    def put_manifest(
        self, name: str, path: str, body: bytes, media_type: str | None, pair: str = "main"
    ) -> None:
        headers = content_type(media_type) if media_type else ()
        self(name, "PUT", path, headers=headers, body=body, pair=pair)


def pull(*types: str) -> tuple[tuple[str, str], ...]:
    """Accept headers, one line per type (as Docker sends them)."""
    return tuple(("Accept", media_type) for media_type in types)


DOCKER_PULL = pull(*ACCEPT_DOCKER)


def build_steps(i: Image) -> list[Step]:
    """Everything sent, in order."""
    step = Steps()

    # -- the API root and unknown routes ---------------------------------------------
    step("base.get", "GET", "")
    step("base.head", "HEAD", "")
    step("base.no-slash", "GET", "/v2")
    step("route.unknown", "GET", f"{APP}/unknown")
    step("route.manifest-method", "POST", f"{APP}/manifests/latest", body=b"{}")

    # -- blobs: POST-PATCH-PATCH-PUT, POST-PUT -----------------------------------------
    step.push_blob("blob.config", APP, i.config)
    step("blob.layer1.post", "POST", f"{APP}/blobs/uploads/", capture="up1")
    half = len(i.layer1) // 2
    step(
        "blob.layer1.patch1",
        "PATCH",
        "@up1",
        "Content-Type: application/octet-stream",
        f"Content-Range: 0-{half - 1}",
        body=i.layer1[:half],
        capture="up1",
    )
    step("blob.layer1.status", "GET", "@up1")
    step(
        "blob.layer1.patch2",
        "PATCH",
        "@up1",
        "Content-Type: application/octet-stream",
        f"Content-Range: {half}-{len(i.layer1) - 1}",
        body=i.layer1[half:],
        capture="up1",
    )
    step("blob.layer1.put", "PUT", "@up1", query=f"digest={sha256(i.layer1)}")
    step.push_blob("blob.layer2", APP, i.layer2)
    step("blob.layer1.head", "HEAD", f"{APP}/blobs/{sha256(i.layer1)}")
    step(
        "blob.layer2.if-none-match",
        "GET",
        f"{APP}/blobs/{sha256(i.layer2)}",
        f'If-None-Match: "{sha256(i.layer2)}"',
    )
    step("blob.cancel.post", "POST", f"{APP}/blobs/uploads/", capture="cancel")
    step("blob.cancel.delete", "DELETE", "@cancel")

    # -- manifests: push ----------------------------------------------------------------
    manifests = f"{APP}/manifests"
    step.put_manifest("put.oci.by-tag", f"{manifests}/oci", i.oci, OCI_MANIFEST)
    step.put_manifest("put.oci.latest", f"{manifests}/latest", i.oci, OCI_MANIFEST)
    step.put_manifest(
        "put.docker.by-digest", f"{manifests}/{sha256(i.docker)}", i.docker, DOCKER_MANIFEST
    )
    step.put_manifest("put.docker.by-tag", f"{manifests}/docker", i.docker, DOCKER_MANIFEST)
    step.put_manifest("put.index.by-tag", f"{manifests}/index", i.index, OCI_INDEX)
    step.put_manifest("put.list.by-tag", f"{manifests}/list", i.mlist, DOCKER_LIST)
    step.put_manifest("put.oci.again", f"{manifests}/oci", i.oci, OCI_MANIFEST)
    for tag in ("v1", "v1.1", "v2", "a-tag", "Z_tag"):
        step.put_manifest(f"put.small.{tag}", f"{manifests}/{tag}", i.small, OCI_MANIFEST)
    # By digest, of a manifest already there: no tag, whatever the answer.
    step.put_manifest("put.small.no-content-type", f"{manifests}/{sha256(i.small)}", i.small, None)
    step.put_manifest(
        "put.artifact.subject", f"{manifests}/{sha256(i.artifact)}", i.artifact, OCI_MANIFEST
    )
    step.put_manifest(
        "put.artifact.missing-subject", f"{manifests}/{sha256(i.orphan)}", i.orphan, OCI_MANIFEST
    )

    # -- manifests: invalid pushes --------------------------------------------------------
    bad = f"{manifests}/bad"
    step.put_manifest("put.invalid.not-json", bad, b"this is not json", OCI_MANIFEST)
    wrong_version = i.oci.replace(b'"schemaVersion": 2', b'"schemaVersion": 3')
    step.put_manifest("put.invalid.schema-version", bad, wrong_version, OCI_MANIFEST)
    unknown_layer = document(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, i.config),
            "layers": [descriptor(OCI_LAYER, b"a layer nobody pushed")],
        }
    )
    step.put_manifest("put.invalid.unknown-layer", bad, unknown_layer, OCI_MANIFEST)
    unknown_config = document(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": descriptor(DOCKER_CONFIG, b"a config nobody pushed"),
            "layers": [descriptor(DOCKER_LAYER, i.layer1)],
        }
    )
    step.put_manifest("put.invalid.unknown-config", bad, unknown_config, DOCKER_MANIFEST)
    unknown_child = document(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                descriptor(OCI_MANIFEST, i.oci),
                descriptor(OCI_MANIFEST, NEVER_PUSHED),
            ],
        }
    )
    step.put_manifest("put.invalid.index-unknown-child", bad, unknown_child, OCI_INDEX)
    step.put_manifest(
        "put.invalid.digest-mismatch", f"{manifests}/{sha256(i.docker)}", i.oci, OCI_MANIFEST
    )
    step.put_manifest("put.invalid.bad-digest", f"{manifests}/sha256:abc", i.oci, OCI_MANIFEST)
    step.put_manifest("put.invalid.bad-tag", f"{manifests}/-bad-tag", i.oci, OCI_MANIFEST)
    step.put_manifest("put.invalid.type-mismatch", bad, i.oci, DOCKER_MANIFEST)
    schema1 = document(
        {
            "schemaVersion": 1,
            "name": APP,
            "tag": "bad",
            "architecture": "amd64",
            "fsLayers": [{"blobSum": sha256(i.layer1)}],
            "history": [{"v1Compatibility": "{}"}],
        }
    )
    step.put_manifest("put.invalid.schema1", bad, schema1, SCHEMA1)
    step.put_manifest("put.invalid.schema1-json", bad, schema1, SCHEMA1_JSON)
    step.put_manifest("put.invalid.blobs-elsewhere", "sbs/empty/manifests/x", i.oci, OCI_MANIFEST)
    # A valid manifest padded to a size: 4 MiB exactly must be taken.
    for label, size in (("4mib", 4 * 1024 * 1024), ("over-4mib", 4 * 1024 * 1024 + 1)):
        padded = json.loads(i.small)
        padded["annotations"] = {"pad": ""}
        padded["annotations"]["pad"] = "x" * (size - len(document(padded)))
        body = document(padded)
        assert len(body) == size
        step.put_manifest(f"put.size.{label}", f"{manifests}/size-{label}", body, OCI_MANIFEST)

    # -- manifests: pull --------------------------------------------------------------------
    targets = {"oci": i.oci, "docker": i.docker, "index": i.index, "list": i.mlist}
    for tag, body in targets.items():
        digest = sha256(body)
        by_tag, by_digest = f"{manifests}/{tag}", f"{manifests}/{digest}"
        for kind, path in (("tag", by_tag), ("digest", by_digest)):
            step(f"get.{tag}.{kind}.docker", "GET", path, headers=DOCKER_PULL)
            step(f"head.{tag}.{kind}.docker", "HEAD", path, headers=DOCKER_PULL)
        step(f"get.{tag}.tag.containerd", "GET", by_tag, f"Accept: {ACCEPT_CONTAINERD}")
        step(f"get.{tag}.tag.skopeo", "GET", by_tag, f"Accept: {ACCEPT_SKOPEO}")
        step(f"get.{tag}.tag.star", "GET", by_tag, "Accept: */*")
        step(
            f"get.{tag}.tag.if-none-match",
            "GET",
            by_tag,
            f"Accept: {ACCEPT_ALL}",
            f'If-None-Match: "{digest}"',
        )
        step(
            f"head.{tag}.tag.if-none-match",
            "HEAD",
            by_tag,
            f"Accept: {ACCEPT_ALL}",
            f'If-None-Match: "{digest}"',
        )
        step(
            f"get.{tag}.tag.if-none-match-other",
            "GET",
            by_tag,
            f"Accept: {ACCEPT_ALL}",
            f'If-None-Match: "{MISSING}"',
        )
        step(f"get.{tag}.tag.only-schema2", "GET", by_tag, headers=pull(DOCKER_MANIFEST))
        step(f"get.{tag}.digest.only-schema2", "GET", by_digest, headers=pull(DOCKER_MANIFEST))
        step(f"get.{tag}.tag.only-oci-manifest", "GET", by_tag, headers=pull(OCI_MANIFEST))
        step(f"get.{tag}.digest.no-accept", "GET", by_digest)
    oci_tag = f"{manifests}/oci"
    step(
        "get.oci.tag.accept-params",
        "GET",
        oci_tag,
        f"Accept: {DOCKER_MANIFEST};q=0.9, {OCI_MANIFEST} ; q=0.5",
    )
    step("get.oci.tag.no-accept", "GET", oci_tag)
    step(
        "get.oci.tag.if-none-match.only-schema2",
        "GET",
        oci_tag,
        f"Accept: {DOCKER_MANIFEST}",
        f'If-None-Match: "{sha256(i.oci)}"',
    )
    step(
        "get.oci.tag.if-none-match.unquoted",
        "GET",
        oci_tag,
        f"Accept: {ACCEPT_ALL}",
        f"If-None-Match: {sha256(i.oci)}",
    )
    step(
        "get.oci.tag.if-none-match.second-line",
        "GET",
        oci_tag,
        f"Accept: {ACCEPT_ALL}",
        f'If-None-Match: "{MISSING}"',
        f'If-None-Match: "{sha256(i.oci)}"',
    )
    step(
        "get.list.tag.if-none-match.image",
        "GET",
        f"{manifests}/list",
        f"Accept: {DOCKER_MANIFEST}",
        f'If-None-Match: "{sha256(i.docker)}"',
    )
    step("head.list.tag.only-schema2", "HEAD", f"{manifests}/list", headers=pull(DOCKER_MANIFEST))
    step("head.size.4mib", "HEAD", f"{manifests}/size-4mib", headers=DOCKER_PULL)
    step("get.missing.tag", "GET", f"{manifests}/nope", headers=DOCKER_PULL)
    step("head.missing.tag", "HEAD", f"{manifests}/nope", headers=DOCKER_PULL)
    step("head.missing.digest", "HEAD", f"{manifests}/{MISSING}", headers=DOCKER_PULL)
    step("get.missing.digest", "GET", f"{manifests}/{MISSING}", headers=DOCKER_PULL)
    step("get.missing.repository", "GET", "sbs/nothing/manifests/latest", headers=DOCKER_PULL)
    step("head.missing.repository", "HEAD", "sbs/nothing/manifests/latest", headers=DOCKER_PULL)
    step(
        "get.other-repository.digest",
        "GET",
        f"{CATALOG_REPOS[0]}/manifests/{sha256(i.oci)}",
        headers=DOCKER_PULL,
    )
    step("get.bad-digest", "GET", f"{manifests}/sha256:xyz", headers=DOCKER_PULL)
    # The OCI conformance suite's name for a manifest that cannot exist.
    step("get.bad-tag", "GET", f"{manifests}/.INVALID_MANIFEST_NAME", headers=DOCKER_PULL)
    step("head.bad-tag", "HEAD", f"{manifests}/.INVALID_MANIFEST_NAME", headers=DOCKER_PULL)

    # -- referrers (OCI 1.1) ----------------------------------------------------------------
    step("referrers.oci", "GET", f"{APP}/referrers/{sha256(i.oci)}")
    step(
        "referrers.oci.filtered",
        "GET",
        f"{APP}/referrers/{sha256(i.oci)}",
        query=f"artifactType={SBOM}",
    )
    step("referrers.missing-subject", "GET", f"{APP}/referrers/{i.orphan_subject}")
    step("referrers.unknown", "GET", f"{APP}/referrers/{MISSING}")
    step("referrers.none", "GET", f"{APP}/referrers/{sha256(i.docker)}")

    # -- more repositories, for the catalog -------------------------------------------------
    for name in [GONE, *CATALOG_REPOS]:
        step.push_blob(f"catalog.setup.{name}.config", name, i.config)
        step.push_blob(f"catalog.setup.{name}.layer", name, i.layer2)
        step.put_manifest(
            f"catalog.setup.{name}.manifest", f"{name}/manifests/only", i.small, OCI_MANIFEST
        )

    # The longest tag there can be, and one longer (in a repository whose tags
    # are not listed).
    other = CATALOG_REPOS[-1]
    for label, length in (("128", 128), ("129", 129)):
        step.put_manifest(
            f"put.tag-length.{label}", f"{other}/manifests/{'t' * length}", i.small, OCI_MANIFEST
        )
    step("get.tag-length.128", "GET", f"{other}/manifests/{'t' * 128}", headers=DOCKER_PULL)

    # -- tags ----------------------------------------------------------------------------------
    tags = f"{APP}/tags/list"
    step("tags.all", "GET", tags)
    step("tags.n2", "GET", tags, query="n=2")
    step("tags.n2.last-docker", "GET", tags, query="n=2&last=docker")
    step("tags.n2.last-v1", "GET", tags, query="n=2&last=v1")
    step("tags.last-v1", "GET", tags, query="last=v1")
    step("tags.last-between", "GET", tags, query="last=m")
    step("tags.n0", "GET", tags, query="n=0")
    step("tags.n-all", "GET", tags, query="n=11")
    step("tags.n-big", "GET", tags, query="n=100000")
    step("tags.n-invalid", "GET", tags, query="n=abc")
    step("tags.n-negative", "GET", tags, query="n=-1")
    step("tags.n-superscript", "GET", tags, query="n=%C2%B2")
    step("tags.unknown-repository", "GET", "sbs/nothing/tags/list")

    # -- catalog --------------------------------------------------------------------------------
    step("catalog.all", "GET", "_catalog")
    step("catalog.n2", "GET", "_catalog", query="n=2")
    step("catalog.n2.last", "GET", "_catalog", query="n=2&last=sbs/gone")
    step("catalog.last", "GET", "_catalog", query="last=sbs/lib/b")
    step("catalog.last-between", "GET", "_catalog", query="last=sbs/c")
    step("catalog.last-past-end", "GET", "_catalog", query="last=zzz")
    step("catalog.n-max", "GET", "_catalog", query=f"n={CATALOG_MAX}")
    step("catalog.n-past-max", "GET", "_catalog", query=f"n={CATALOG_MAX + 1}")
    step("catalog.n-exact", "GET", "_catalog", query="n=3&last=sbs/lib/a")
    step("catalog.n0", "GET", "_catalog", query="n=0")
    step("catalog.n-invalid", "GET", "_catalog", query="n=abc")
    step("catalog.n-negative", "GET", "_catalog", query="n=-1")
    # A repository with blobs and no manifest; one with an upload only.
    step.push_blob("catalog.setup.blob-only", "sbs/blob-only", i.config)
    step("catalog.setup.upload-only", "POST", "sbs/upload-only/blobs/uploads/")
    step("catalog.with-blob-only", "GET", "_catalog", query="n=3")
    step("tags.blob-only", "GET", "sbs/blob-only/tags/list")

    # -- delete ----------------------------------------------------------------------------------
    gone = f"{GONE}/manifests/{sha256(i.small)}"
    step("delete.gone.by-digest", "DELETE", gone)
    step("delete.gone.again", "DELETE", gone)
    step("delete.gone.get-tag", "GET", f"{GONE}/manifests/only", headers=DOCKER_PULL)
    step("delete.gone.get-digest", "GET", gone, headers=DOCKER_PULL)
    step(
        "delete.gone.if-none-match",
        "GET",
        gone,
        f"Accept: {ACCEPT_ALL}",
        f'If-None-Match: "{sha256(i.small)}"',
    )
    step("delete.gone.tags", "GET", f"{GONE}/tags/list")
    step("delete.gone.catalog", "GET", "_catalog", query="n=3&last=sbs/blob-only")
    step("delete.missing.digest", "DELETE", f"{manifests}/{MISSING}")
    step("delete.missing.repository", "DELETE", f"sbs/nothing/manifests/{MISSING}")
    # A manifest an index refers to.
    step("delete.oci.by-digest", "DELETE", f"{manifests}/{sha256(i.oci)}")
    step("delete.oci.get-tag", "GET", oci_tag, headers=DOCKER_PULL)
    step("delete.oci.get-latest", "GET", f"{manifests}/latest", headers=DOCKER_PULL)
    step("delete.oci.get-index", "GET", f"{manifests}/index", headers=DOCKER_PULL)
    step("delete.oci.tags", "GET", tags)
    step("delete.oci.referrers", "GET", f"{APP}/referrers/{sha256(i.oci)}")
    # By tag (OCI 1.1; not in Distribution 2.8).
    step("delete.docker.by-tag", "DELETE", f"{manifests}/docker")
    step("delete.docker.by-tag.get-tag", "GET", f"{manifests}/docker", headers=DOCKER_PULL)
    step(
        "delete.docker.by-tag.get-digest",
        "GET",
        f"{manifests}/{sha256(i.docker)}",
        headers=DOCKER_PULL,
    )
    step("delete.missing.tag", "DELETE", f"{manifests}/nope")

    # -- deletes disabled (a second pair of registries) ----------------------------------------
    nd = NODELETE
    step.push_blob("nodelete.setup.config", nd, i.config, pair="nodelete")
    step.push_blob("nodelete.setup.layer", nd, i.layer2, pair="nodelete")
    step.put_manifest(
        "nodelete.setup.manifest", f"{nd}/manifests/only", i.small, OCI_MANIFEST, pair="nodelete"
    )
    step(
        "nodelete.delete.by-digest", "DELETE", f"{nd}/manifests/{sha256(i.small)}", pair="nodelete"
    )
    step("nodelete.delete.by-tag", "DELETE", f"{nd}/manifests/only", pair="nodelete")
    step("nodelete.delete.missing", "DELETE", f"{nd}/manifests/{MISSING}", pair="nodelete")
    step("nodelete.delete.blob", "DELETE", f"{nd}/blobs/{sha256(i.config)}", pair="nodelete")
    step("nodelete.get", "GET", f"{nd}/manifests/only", headers=DOCKER_PULL, pair="nodelete")
    step("nodelete.tags", "GET", f"{nd}/tags/list", pair="nodelete")
    # A monolithic POST (in this pair, whose catalog is not listed).
    step(
        "nodelete.blob.post-digest",
        "POST",
        "sbs/monolithic/blobs/uploads/",
        headers=OCTETS,
        body=i.config,
        query=f"digest={sha256(i.config)}",
        pair="nodelete",
    )

    names = [one.name for one in step]
    assert len(names) == len(set(names)), "step names must be unique"
    return list(step)


# -- expected differences ----------------------------------------------------------

ANY: Any = object()


@dataclass(frozen=True)
class Errors:
    """Matches an OCI error body with these codes."""

    codes: tuple[str, ...]

    def __call__(self, value: Any) -> bool:
        errors = error_list(value)
        return errors is not None and tuple(error.get("code") for error in errors) == self.codes

    def __repr__(self) -> str:
        return f"OCI errors {list(self.codes)}"


def errors(*codes: str) -> Errors:
    return Errors(codes)


@dataclass(frozen=True)
class HeaderNames:
    """Matches a set of header names, whatever their values."""

    names: tuple[str, ...]

    def __init__(self, *names: str) -> None:
        object.__setattr__(self, "names", names)

    def __call__(self, value: Any) -> bool:
        return isinstance(value, dict) and sorted(value) == sorted(self.names)

    def __repr__(self) -> str:
        return f"headers {list(self.names)}"


@dataclass(frozen=True)
class Allowed:
    """
    An expected difference: why, and what txregistry must answer there for
    the difference to be the expected one (L{ANY}: anything; a callable:
    whatever it is true of; else: exactly that value).
    """

    reason: str
    candidate: Any = ANY

    def admits(self, difference: Difference) -> bool:
        if self.candidate is ANY:
            return True
        if callable(self.candidate):
            return bool(self.candidate(difference.candidate))
        return bool(self.candidate == difference.candidate)


FIELDS = {
    "status": "status",
    "names": "header-names",  # the candidate's value: the headers only it sent
    "content_type": "header:content-type",
    "location": "header:location",
    "link": "header:link",
    "body": "body",
    "codes": "error-codes",
    "messages": "error-messages",
}

JSON = "application/json; charset=utf-8"
ORIGIN = "<origin>"


def allowlist(i: Image) -> dict[tuple[str, str], Allowed]:
    """
    The expected differences, each with its reason: (step name, field) ->
    L{Allowed}.  Where txregistry's answer is known exactly, it is given, so
    that a wrong answer there still shows.
    """
    allowed: dict[tuple[str, str], Allowed] = {}

    def allow(steps: str | list[str], reason: str, **fields: Any) -> None:
        for name in [steps] if isinstance(steps, str) else steps:
            for field_name, candidate in fields.items():
                allowed[(name, FIELDS[field_name])] = Allowed(reason, candidate)

    def digest_headers(data: bytes) -> dict[str, str]:
        digest = sha256(data)
        return {"docker-content-digest": digest, "etag": f'"{digest}"'}

    # -- routing ------------------------------------------------------------------------------
    allow(
        "base.no-slash",
        "GET /v2 (no slash): Distribution's router redirects it (301) to /v2/; txregistry "
        "answers it as /v2/ (tests/test_api_base.py asserts the 200)",
        status=200,
        names={"x-content-type-options": "nosniff"},
        content_type=JSON,
        body={},
    )
    allow(
        "route.unknown",
        "an unknown route: Distribution 2.8 answers Go's plain-text 404; txregistry the same "
        "status with OCI error JSON (UNSUPPORTED)",
        content_type=JSON,
        body=errors("UNSUPPORTED"),
    )
    allow(
        "route.manifest-method",
        "a method the route lacks: Distribution 2.8 answers a plain-text 405; txregistry the "
        "same status and Allow with OCI error JSON (UNSUPPORTED)",
        content_type=JSON,
        body=errors("UNSUPPORTED"),
    )

    # -- pushing ------------------------------------------------------------------------------
    small = sha256(i.small)
    allow(
        "put.small.no-content-type",
        "a manifest PUT without Content-Type: Distribution 2.8 takes it for schema 1 "
        "(refused, 400 MANIFEST_INVALID); txregistry goes by the body's mediaType",
        status=201,
        names={
            "docker-content-digest": small,
            "location": f"{ORIGIN}/v2/{APP}/manifests/{small}",
        },
        body=b"",
    )
    allow(
        "put.artifact.subject",
        "OCI 1.1: the PUT of a manifest with a subject answers OCI-Subject; Distribution 2.8 "
        "predates it",
        names={"oci-subject": sha256(i.oci)},
    )
    allow(
        "put.artifact.missing-subject",
        "OCI 1.1: OCI-Subject, also for a subject the registry does not have; Distribution "
        "2.8 predates it",
        names={"oci-subject": i.orphan_subject},
    )
    allow(
        "put.invalid.schema-version",
        "schemaVersion 3: Distribution 2.8 fails with 500 UNKNOWN; txregistry answers 400 "
        "MANIFEST_INVALID",
        status=400,
        codes=["MANIFEST_INVALID"],
    )
    allow(
        ["put.invalid.bad-digest", "get.bad-digest"],
        "a malformed digest reference: Distribution 2.8 takes it for a tag and fails in "
        "storage (500 UNKNOWN); txregistry answers 400 DIGEST_INVALID",
        status=400,
        codes=["DIGEST_INVALID"],
    )
    allow(
        "get.bad-tag",
        "a GET of a reference outside the tag grammar: both answer 404, Distribution's router "
        "its plain-text one (no route matches); txregistry 404 MANIFEST_UNKNOWN",
        content_type=JSON,
        body=errors("MANIFEST_UNKNOWN"),
    )
    allow(
        "head.bad-tag",
        "a HEAD of a reference outside the tag grammar: both answer 404 without a body; "
        "Distribution's router labels it plain text, txregistry JSON (MANIFEST_UNKNOWN)",
        content_type=JSON,
    )
    allow(
        ["put.invalid.bad-tag", "put.tag-length.129"],
        "a tag outside the tag grammar: Distribution's router matches no route (plain-text "
        "404); txregistry names the problem (400 TAG_INVALID)",
        status=400,
        content_type=JSON,
        body=errors("TAG_INVALID"),
    )
    allow(
        "put.size.over-4mib",
        "a manifest over 4 MiB: OCI 1.1 says a registry SHOULD answer 413; Distribution 2.8 "
        "answers 400 (the code is MANIFEST_INVALID on both)",
        status=413,
    )
    allow(
        "nodelete.blob.post-digest",
        "OCI: a POST with ?digest= and the blob is a whole upload (201); Distribution 2.8 "
        "ignores digest and body and opens an upload (202)",
        status=201,
        names={"docker-content-digest": sha256(i.config)},
        location=f"{ORIGIN}/v2/sbs/monolithic/blobs/{sha256(i.config)}",
    )

    # -- pulling ------------------------------------------------------------------------------
    for tag, data, media_type in (
        ("oci", i.oci, OCI_MANIFEST),
        ("docker", i.docker, DOCKER_MANIFEST),
        ("index", i.index, OCI_INDEX),
        ("list", i.mlist, DOCKER_LIST),
    ):
        allow(
            f"get.{tag}.tag.star",
            "Accept: */* alone: Distribution 2.8 takes it for a schema-1-only client (404 for "
            "OCI types; 400 from the failed schema 1 conversion for Docker types); txregistry "
            "serves the stored manifest",
            status=200,
            names=digest_headers(data),
            content_type=media_type,
            body=json.loads(data),
        )
        steps = [f"get.{tag}.tag.if-none-match", f"head.{tag}.tag.if-none-match"]
        if tag == "oci":
            steps += [
                "get.oci.tag.if-none-match.only-schema2",
                "get.oci.tag.if-none-match.unquoted",
                "get.oci.tag.if-none-match.second-line",
            ]
        allow(
            steps,
            "304: txregistry sends ETag (RFC 9110 15.4.5 requires it) and "
            "Docker-Content-Digest; Distribution 2.8 sends neither",
            names=digest_headers(data),
        )
    allow(
        "blob.layer2.if-none-match",
        "blob 304: txregistry repeats the 200's Accept-Ranges and Content-Type (harmless; "
        "RFC 9110 15.4.5 only discourages it)",
        names={"accept-ranges": "bytes", "content-type": "application/octet-stream"},
    )
    allow(
        [
            "get.oci.tag.only-schema2",
            "get.oci.digest.only-schema2",
            "get.oci.digest.no-accept",
            "get.oci.tag.no-accept",
            "get.index.tag.only-schema2",
            "get.index.digest.only-schema2",
            "get.index.tag.only-oci-manifest",
            "get.index.digest.no-accept",
        ],
        "an Accept that excludes the stored type: same status and code; Distribution puts its "
        "explanation in message, txregistry keeps the registered message and explains in detail",
        messages=["manifest unknown"],
    )
    allow(
        "get.docker.tag.only-oci-manifest",
        "schema 2 by tag to a client that does not list schema 2: Distribution 2.8 tries to "
        "convert it to schema 1 and fails (400); txregistry, without schema 1, serves the "
        "stored manifest, as Distribution 3 does",
        status=200,
        names=digest_headers(i.docker),
        content_type=DOCKER_MANIFEST,
        body=json.loads(i.docker),
    )

    # -- referrers ----------------------------------------------------------------------------
    def referrers(*manifests: dict[str, Any]) -> dict[str, Any]:
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(manifests)}

    sbom = descriptor(OCI_MANIFEST, i.artifact, artifactType=SBOM)
    orphan = descriptor(
        OCI_MANIFEST,
        i.orphan,
        artifactType=SIGNATURE,
        annotations={"org.example.note": "orphan"},
    )
    reason = "OCI 1.1 referrers API; Distribution 2.8 has no such route (plain-text 404)"
    for name, body in (
        ("referrers.oci", referrers(sbom)),
        ("referrers.oci.filtered", referrers(sbom)),
        ("referrers.missing-subject", referrers(orphan)),
        ("referrers.unknown", referrers()),
        ("referrers.none", referrers()),
        ("delete.oci.referrers", referrers(sbom)),
    ):
        allow(name, reason, status=200, content_type=OCI_INDEX, body=body)
    allow("referrers.oci.filtered", reason, names={"oci-filters-applied": "artifactType"})

    # -- tags and catalog -----------------------------------------------------------------------
    reason = (
        "OCI 1.1 tags pagination (n, last, Link); Distribution 2.8 ignores n and last and "
        "lists every tag"
    )

    def tags(*names: str) -> dict[str, Any]:
        return {"name": APP, "tags": list(names)}

    def link(path: str, last: str, n: int) -> dict[str, str]:
        return {"link": f'</v2/{path}?last={last}&n={n}>; rel="next"'}

    tags_path = f"{APP}/tags/list"
    allow("tags.n2", reason, names=link(tags_path, "a-tag", 2), body=tags("Z_tag", "a-tag"))
    allow(
        "tags.n2.last-docker",
        reason,
        names=link(tags_path, "latest", 2),
        body=tags("index", "latest"),
    )
    allow(["tags.n2.last-v1", "tags.last-v1"], reason, body=tags("v1.1", "v2"))
    allow("tags.last-between", reason, body=tags("oci", "size-4mib", "v1", "v1.1", "v2"))
    allow("tags.n0", reason, body=tags())
    reason = (
        "an n that is not a whole number: Distribution 2.8 ignores it; txregistry answers "
        "400 PAGINATION_NUMBER_INVALID"
    )
    allow(
        ["tags.n-invalid", "tags.n-negative", "tags.n-superscript"],
        reason,
        status=400,
        body=errors("PAGINATION_NUMBER_INVALID"),
    )
    allow(
        ["catalog.n-invalid", "catalog.n-negative"],
        reason,
        status=400,
        names={},
        body=errors("PAGINATION_NUMBER_INVALID"),
    )
    allow(
        "delete.gone.if-none-match",
        "If-None-Match naming a deleted manifest: Distribution 2.8 compares the ETag before it "
        "looks the manifest up, and answers 304 for one it no longer has; txregistry looks it "
        "up first (404 MANIFEST_UNKNOWN)",
        status=404,
        names=HeaderNames("content-length", "content-type"),
        body=errors("MANIFEST_UNKNOWN"),
    )
    allow(
        "delete.gone.tags",
        "no tags left: Distribution 2.8 encodes the empty list as null (a nil Go slice); "
        "txregistry answers []",
        body={"name": GONE, "tags": []},
    )

    # -- delete -------------------------------------------------------------------------------
    allow(
        "delete.docker.by-tag",
        "OCI 1.1: DELETE by tag removes the tag (202); Distribution 2.8 refuses a tag "
        "reference (400 DIGEST_INVALID)",
        status=202,
        names={},
        body=b"",
    )
    allow(
        "delete.docker.by-tag.get-tag",
        "follows from DELETE by tag: the tag is gone from txregistry only",
        status=404,
        names={},
        content_type=JSON,
        body=errors("MANIFEST_UNKNOWN"),
    )
    allow(
        "delete.missing.tag",
        "OCI 1.1 DELETE by tag: an unknown tag is 404 MANIFEST_UNKNOWN; Distribution 2.8 "
        "refuses any tag reference (400 DIGEST_INVALID)",
        status=404,
        codes=["MANIFEST_UNKNOWN"],
    )
    return allowed


# -- running -----------------------------------------------------------------------


@dataclass
class Side:
    """One registry process and the Location headers it answered."""

    label: str
    process: RegistryProcess
    captured: dict[str, str] = field(default_factory=dict, repr=False)

    def target(self, step: Step) -> str:
        if step.target.startswith("@"):
            parts = urlsplit(self.captured[step.target[1:]])
            path, query = parts.path, parts.query
        elif step.target.startswith("/"):
            path, query = step.target, ""
        else:
            path, query = "/v2/" + step.target, ""
        if step.query:
            query = f"{query}&{step.query}" if query else step.query
        return path + (f"?{query}" if query else "")

    def send(self, step: Step) -> HTTPResponse:
        connection = http.client.HTTPConnection("127.0.0.1", self.process.port, timeout=30)
        try:
            connection.putrequest(step.method, self.target(step), skip_accept_encoding=True)
            for name, value in step.headers:
                connection.putheader(name, value)
            if step.body is not None or step.method in ("POST", "PUT", "PATCH"):
                connection.putheader("Content-Length", str(len(step.body or b"")))
            connection.endheaders(step.body)
            response = connection.getresponse()
            result = HTTPResponse(response.status, response.headers, response.read())
        finally:
            connection.close()
        if step.capture is not None:
            location = result.header("Location")
            if location is not None:
                self.captured[step.capture] = location
        return result


@dataclass
class Difference:
    """
    One way two answers differ.  The values are raw: an C{int} status, a
    header's C{str} value, lists of header names, error codes or messages,
    a parsed JSON body or the body's bytes.
    """

    field: str
    reference: Any
    candidate: Any
    allowed: str | None = None
    note: str = ""


@dataclass
class Outcome:
    step: Step
    reference: HTTPResponse | None
    candidate: HTTPResponse | None
    differences: list[Difference]


def normalise_url(value: str, side: Side) -> str:
    """A Location or Link with this side's origin, upload ids and state replaced."""

    def one(url: str) -> str:
        origin = side.process.url
        absolute = url.startswith(origin)
        if absolute:
            url = url[len(origin) :]
        parts = urlsplit(url)
        path = UUID.sub("<uuid>", parts.path)
        pairs = sorted(
            (key, "<state>" if key == "_state" else UUID.sub("<uuid>", item))
            for key, item in parse_qsl(parts.query, keep_blank_values=True)
        )
        query = urlencode(pairs, safe="<>/:")
        return ("<origin>" if absolute else "") + path + (f"?{query}" if query else "")

    if value.startswith("<"):  # a Link header: <url>; rel="next"
        return re.sub(r"<([^>]*)>", lambda found: "<" + one(found.group(1)) + ">", value)
    return one(value)


def header_map(response: HTTPResponse) -> dict[str, str]:
    values: dict[str, list[str]] = {}
    for name, value in response.headers.items():
        values.setdefault(name.lower(), []).append(value)
    return {name: ", ".join(items) for name, items in values.items()}


def comparable_headers(response: HTTPResponse, side: Side) -> dict[str, str]:
    """
    The response's headers, names lower-cased, values as compared: URLs
    normalised, per-process values replaced by a placeholder.
    """
    headers = {}
    for name, value in header_map(response).items():
        if name in IGNORED_HEADERS:
            continue
        if name in URL_HEADERS:
            value = normalise_url(value, side)
        elif name in NAME_ONLY_HEADERS:
            value = "<per-process>"
        headers[name] = value
    return headers


def parse_json(body: bytes) -> Any:
    """The parsed body, or L{NotJSON}."""
    try:
        return json.loads(body)
    except ValueError:
        return NOT_JSON


NOT_JSON = object()


def error_list(parsed: Any) -> list[dict[str, Any]] | None:
    if isinstance(parsed, dict) and isinstance(parsed.get("errors"), list):
        return [error if isinstance(error, dict) else {} for error in parsed["errors"]]
    return None


def normalise_reference_body(step: Step, parsed: Any) -> Any:
    """
    Distribution 2.8 lists tags in the order the filesystem lists the
    folder (its driver does not sort): an artifact of the disk, not an
    answer, so the reference's tags are sorted before comparing.
    """
    if (
        step.target.endswith("/tags/list")
        and isinstance(parsed, dict)
        and isinstance(parsed.get("tags"), list)
    ):
        return {**parsed, "tags": sorted(parsed["tags"])}
    return parsed


def short(value: Any, limit: int = 200) -> str:
    if isinstance(value, bytes | bytearray):
        text = repr(bytes(value))
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, sort_keys=True, default=repr)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show_body(body: bytes) -> str:
    parsed = parse_json(body)
    return short(body if parsed is NOT_JSON else parsed)


def compare(
    step: Step,
    reference: HTTPResponse,
    candidate: HTTPResponse,
    ref_side: Side,
    cand_side: Side,
) -> list[Difference]:
    differences: list[Difference] = []
    if reference.status != candidate.status:
        differences.append(Difference("status", reference.status, candidate.status))

    ref_headers = comparable_headers(reference, ref_side)
    cand_headers = comparable_headers(candidate, cand_side)
    if ref_headers.keys() != cand_headers.keys():
        differences.append(
            Difference(
                "header-names",
                {name: ref_headers[name] for name in sorted(ref_headers.keys() - cand_headers)},
                {name: cand_headers[name] for name in sorted(cand_headers.keys() - ref_headers)},
                note="the headers only one side sent",
            )
        )
    same_bytes = reference.body == candidate.body
    # On HEAD, Content-Length is the length of what GET would send: the
    # same bytes for a success, an error body (whose detail differs) else.
    same_length = same_bytes if step.method != "HEAD" else reference.status < 300
    for name in sorted(ref_headers.keys() & cand_headers.keys()):
        if name == "content-length" and not same_length:
            continue
        if ref_headers[name] != cand_headers[name]:
            differences.append(Difference(f"header:{name}", ref_headers[name], cand_headers[name]))

    if same_bytes:
        return differences
    ref_parsed = normalise_reference_body(step, parse_json(reference.body))
    cand_parsed = parse_json(candidate.body)
    ref_errors, cand_errors = error_list(ref_parsed), error_list(cand_parsed)
    if ref_errors is not None and cand_errors is not None:
        ref_codes = [error.get("code") for error in ref_errors]
        cand_codes = [error.get("code") for error in cand_errors]
        if ref_codes != cand_codes:
            differences.append(Difference("error-codes", ref_codes, cand_codes))
        else:
            ref_messages = [error.get("message") for error in ref_errors]
            cand_messages = [error.get("message") for error in cand_errors]
            if ref_messages != cand_messages:
                differences.append(Difference("error-messages", ref_messages, cand_messages))
    elif ref_parsed is NOT_JSON or cand_parsed is NOT_JSON or ref_parsed != cand_parsed:
        differences.append(
            Difference(
                "body",
                reference.body if ref_parsed is NOT_JSON else ref_parsed,
                candidate.body if cand_parsed is NOT_JSON else cand_parsed,
            )
        )
    return differences


def run_steps(steps: list[Step], pairs: dict[str, tuple[Side, Side]]) -> list[Outcome]:
    outcomes = []
    for step in steps:
        ref_side, cand_side = pairs[step.pair]
        responses: list[HTTPResponse | None] = []
        failures: list[str] = []
        for side in (ref_side, cand_side):
            try:
                responses.append(side.send(step))
                failures.append("")
            except (OSError, http.client.HTTPException, KeyError) as error:
                responses.append(None)
                failures.append(f"{type(error).__name__}: {error}")
        reference, candidate = responses
        if reference is None or candidate is None:
            differences = (
                [Difference("error", failures[0] or None, failures[1] or None)]
                if failures[0] != failures[1]
                else []
            )
        else:
            differences = compare(step, reference, candidate, ref_side, cand_side)
        outcomes.append(Outcome(step, reference, candidate, differences))
    return outcomes


def render(outcomes: list[Outcome], stale: list[tuple[tuple[str, str], str]], cand: str) -> str:
    """
    The report: one line a step, then each step's differences (with the
    reason of the allowed ones), then the summary.
    """
    differing = [outcome for outcome in outcomes if outcome.differences]
    unexpected = [(o.step.name, d.field) for o in differing for d in o.differences if not d.allowed]
    lines = [
        f"Side by side: reference (Distribution 2.8.2) vs {cand}: {len(outcomes)} steps, "
        f"{len(differing)} with differences, {len(unexpected)} unexpected differences, "
        f"{len(stale)} allowlisted differences that did not happen.",
        "",
        f"{'step':<42} {'request':<62} {'ref':<4} {cand[:4]:<4} result",
    ]
    for outcome in outcomes:
        ref_status = str(outcome.reference.status) if outcome.reference else "ERR"
        cand_status = str(outcome.candidate.status) if outcome.candidate else "ERR"
        if not outcome.differences:
            result = "same"
        elif all(d.allowed for d in outcome.differences):
            result = "allowed"
        else:
            result = "DIFFERENT"
        lines.append(
            f"{outcome.step.name:<42} {outcome.step.describe():<62} "
            f"{ref_status:<4} {cand_status:<4} {result}"
        )
        if VERBOSE and outcome.reference is not None:
            response = outcome.reference
            shown = header_map(response)
            for name in IGNORED_HEADERS | {"docker-distribution-api-version"}:
                shown.pop(name, None)
            lines.append(f"    reference headers: {short(shown, 400)}")
            lines.append(f"    reference body: {show_body(response.body)}")

    lines += ["", "Differences:"]
    for outcome in differing:
        lines.append("")
        lines.append(f"{outcome.step.name}: {outcome.step.describe()}")
        reasons = []
        for difference in outcome.differences:
            if difference.allowed and difference.allowed not in reasons:
                reasons.append(difference.allowed)
            verdict = "allowed" if difference.allowed else "UNEXPECTED"
            note = f" ({difference.note})" if difference.note else ""
            lines.append(f"    {difference.field} [{verdict}]{note}")
            lines.append(f"        reference : {short(difference.reference)}")
            lines.append(f"        {cand:<10}: {short(difference.candidate)}")
        lines += [f"    why: {reason}" for reason in reasons]

    lines += ["", f"Unexpected differences: {len(unexpected)}"]
    lines += [f"    {name}  {field_name}" for name, field_name in unexpected]
    lines.append(f"Allowlisted differences that did not happen: {len(stale)}")
    lines += [f"    {name}  {field_name}  ({reason})" for (name, field_name), reason in stale]
    return "\n".join(lines) + "\n"


def _start_pair(tmp: Path, pair: str, delete: bool) -> tuple[RegistryProcess, RegistryProcess]:
    processes = []
    for kind in ("reference", CANDIDATE):
        label = f"{pair}-{'ref' if not processes else 'cand'}"
        root = tmp / label / "root"
        config = base_config(
            root,
            storage={
                "filesystem": {"rootdirectory": str(root)},
                "delete": {"enabled": delete},
            },
            http={
                "addr": "127.0.0.1:0",
                "secret": SECRET,
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
            catalog={"maxentries": CATALOG_MAX},
        )
        processes.append(
            RegistryProcess(tmp / label, config, reference=kind == "reference", name=label)
        )
    return processes[0], processes[1]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Side, Side]]]:
    tmp = tmp_path_factory.mktemp("side-by-side")
    started = {
        "main": _start_pair(tmp, "main", delete=True),
        "nodelete": _start_pair(tmp, "nodelete", delete=False),
    }
    processes = [process for pair in started.values() for process in pair]
    try:
        with concurrent.futures.ThreadPoolExecutor(len(processes)) as pool:
            list(pool.map(lambda process: process.start(), processes))
        yield {
            name: (Side("reference", ref), Side(CANDIDATE, cand))
            for name, (ref, cand) in started.items()
        }
    finally:
        for process in processes:
            process.stop()


def test_side_by_side(pairs: dict[str, tuple[Side, Side]], tmp_path: Path) -> None:
    """
    The same requests to the reference and to txregistry get the same
    answers, but for the differences L{allowlist} explains.
    """
    image = Image.build()
    outcomes = run_steps(build_steps(image), pairs)
    allowed = allowlist(image) if CANDIDATE != "reference" else {}
    seen = set()
    for outcome in outcomes:
        for difference in outcome.differences:
            key = (outcome.step.name, difference.field)
            entry = allowed.get(key)
            if entry is None:
                continue
            seen.add(key)
            if entry.admits(difference):
                difference.allowed = entry.reason
            else:
                difference.note = (difference.note + "; " if difference.note else "") + (
                    f"the allowlist expects {short(entry.candidate, 100)}"
                )
    stale = [(key, entry.reason) for key, entry in allowed.items() if key not in seen]
    table = render(outcomes, stale, CANDIDATE)
    report = tmp_path / "side-by-side.txt"
    report.write_text(table)
    print()
    print(table)
    print(f"(written to {report})")

    failures = []
    unexpected = [
        f"{o.step.name} {d.field}" for o in outcomes for d in o.differences if not d.allowed
    ]
    if unexpected:
        failures.append(f"{len(unexpected)} unexpected differences: " + ", ".join(unexpected))
    if stale:
        failures.append(f"allowlisted differences that no longer happen: {[k for k, _ in stale]}")
    for _, candidate in pairs.values():
        log = candidate.process.output()
        problems = [line for line in log.splitlines() if "Traceback" in line or "Unhandled" in line]
        if problems:
            failures.append(f"{candidate.process.name} logged:\n" + "\n".join(problems))
    assert not failures, f"(-s shows the table; it is also in {report})\n" + "\n".join(failures)
