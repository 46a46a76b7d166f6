"""
Real clients pushing and pulling whole images: skopeo, podman (with an
image built by buildah) and, for the referrers API, plain HTTP.  Every test
that is about what a registry serves runs against both registries, the
reference (Distribution 2.8's C{docker-registry}) and txregistry, each a
process on 127.0.0.1; the data-directory tests hand one storage root from
one to the other.

The tools are Debian packages (skopeo, podman, buildah, docker-registry);
the tests fail, rather than skip, naming the package of a missing one.
Nothing here talks to anything but 127.0.0.1: the images are built offline
(see L{clients}), the clients get a registries.conf with no search
registries and no proxy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clients import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    BuiltImage,
    Clients,
    CommandFailed,
    ImageSet,
    OCILayout,
    Target,
    answer_to,
    build_with_buildah,
    client_hello,
    push_referrer,
    referrers,
    same_content,
    same_image,
    sha256,
)
from txregistry.registry.manifest_formats import DOCKER_MANIFEST_LIST as DOCKER_LIST
from txregistry.testing.redisserver import RedisServerProcess
from txregistry.testing.s3server import S3ServerProcess

# txregistry on the filesystem, without and with the Redis descriptor cache,
# and on S3 (moto's server) with blob GETs streamed through the registry or
# redirected to presigned URLs.
TXREGISTRY_KINDS = ["txregistry", "txregistry-redis", "txregistry-s3", "txregistry-s3-redirect"]
KINDS = ["reference", *TXREGISTRY_KINDS]


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def buildah_image(clients: Clients, tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """An image of two layers that buildah built, in a store of its own."""
    folder = tmp_path_factory.mktemp("buildah")
    return build_with_buildah(clients, clients.new_store(folder / "store"), folder / "context")


@pytest.fixture(scope="module", params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Which registry the test runs against."""
    kind: str = request.param
    return kind


def _storage(kind: str, request: pytest.FixtureRequest) -> dict[str, Any] | None:
    """
    The storage section of a C{txregistry-s3*} kind: a bucket of its own;
    of C{txregistry-redis}: the filesystem with the Redis cache.
    """
    if kind == "txregistry-redis":
        return {"delete": {"enabled": True}, "cache": {"blobdescriptor": "redis"}}
    if not kind.startswith("txregistry-s3"):
        return None
    s3: S3ServerProcess = request.getfixturevalue("s3_server")
    bucket = f"clients-{kind}"
    s3.create_bucket(bucket)
    return {
        **s3.storage_parameters(bucket, "/registry"),
        "delete": {"enabled": True},
        "redirect": {"disable": kind != "txregistry-s3-redirect"},
    }


@pytest.fixture(scope="module")
def target(
    kind: str,
    clients: Clients,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Target]:
    """The registry under test, with deletes enabled, for the whole module."""
    workdir = tmp_path_factory.mktemp(kind)
    storage = _storage(kind, request)
    sections = None
    if kind == "txregistry-redis":
        assert storage is not None
        storage["filesystem"] = {"rootdirectory": str(workdir / "root")}
        redis: RedisServerProcess = request.getfixturevalue("redis_server")
        sections = {"redis": {"addr": redis.addr}}
    server = Target(kind, workdir / "root", workdir, storage, sections).start()
    clients.allow(server)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _target_log_is_clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that made txregistry log a traceback."""
    if "target" not in request.fixturenames:
        yield
        return
    server: Target = request.getfixturevalue("target")
    mark = server.log_mark()
    yield
    problems = server.log_problems(mark)
    assert not problems, f"{server.kind} logged:\n" + "\n".join(problems)


# -- the HTTPS probe ---------------------------------------------------------------------


def test_tls_probe_is_answered_at_once(target: Target) -> None:
    """
    A TLS ClientHello sent to the plain-HTTP port is answered (400, or the
    connection closed) at once.

    Every containers/image client (skopeo, podman, buildah) pings
    C{https://HOST/v2/} first, even with C{--tls-verify=false} or an
    C{insecure} registry, and falls back to C{http://} only when that
    fails.  Distribution answers the ClientHello with a 400 at once: Go
    reads the request line up to the first LF, and every ClientHello has
    one (the supported_groups extension is type 0x000a).  A server that
    waits for more (for a CR LF) makes every client command wait out the
    client's TLS handshake timeout, 10 s, before it says anything over
    HTTP.
    """
    answer, elapsed = answer_to("127.0.0.1", target.process.port, client_hello(), within=3.0)
    assert answer != b"<silence>", (
        f"{target.kind} said nothing to a TLS ClientHello for {elapsed:.1f}s; skopeo and "
        "podman wait 10 s (their TLS handshake timeout) on every command before falling "
        "back to plain HTTP"
    )
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert elapsed < 1.0, elapsed


# -- skopeo ----------------------------------------------------------------------------


def test_skopeo_push(target: Target, clients: Clients, images: ImageSet) -> None:
    """
    C{skopeo copy oci:... docker://...} pushes the image with its digests
    unchanged; the registry serves the manifest, by tag and by digest, byte
    for byte, and every blob.
    """
    image = images.single
    digest = clients.push(target, images.layout, "single", "clients/push:v1")
    assert digest == image.digest

    for reference in ("v1", image.digest):
        response = target.request(
            "GET", f"clients/push/manifests/{reference}", headers={"Accept": OCI_MANIFEST}
        )
        assert response.status == 200, response.body
        assert response.body == image.manifest_bytes
        assert response.header("Docker-Content-Digest") == image.digest
        assert response.header("Content-Type") == OCI_MANIFEST
    for blob in (image.config, *image.layers):
        response = target.request("HEAD", f"clients/push/blobs/{blob.digest}", follow=True)
        assert response.status == 200, blob
        assert response.header("Content-Length") == str(blob.size)


def test_skopeo_inspect(target: Target, clients: Clients, images: ImageSet) -> None:
    """
    C{skopeo inspect} reports the pushed digest, layers, platform and
    labels; C{--raw} gives the manifest's bytes, C{--config --raw} the
    config's.
    """
    image = images.single
    clients.push(target, images.layout, "single", "clients/inspect:v1")

    inspected = clients.inspect(target, "clients/inspect:v1")
    assert inspected["Digest"] == image.digest
    assert inspected["Layers"] == image.layer_digests
    assert inspected["Architecture"] == "amd64"
    assert inspected["Os"] == "linux"
    assert inspected["Labels"] == {"org.example.built-by": "txregistry client tests"}
    assert inspected["RepoTags"] == ["v1"]
    assert clients.raw_manifest(target, "clients/inspect:v1") == image.manifest_bytes
    config = clients.skopeo(
        target,
        "inspect",
        "--tls-verify=false",
        "--config",
        "--raw",
        f"{target.ref('clients/inspect', image.digest)}",
    )
    assert config.encode() == images.layout.blob(image.config.digest)


def test_skopeo_list_tags(target: Target, clients: Clients, images: ImageSet) -> None:
    """C{skopeo list-tags} lists every tag pushed, whichever image it names."""
    for tag in ("v1", "v2", "latest"):
        clients.push(target, images.layout, "single", f"clients/tags:{tag}")
    clients.push(target, images.layout, "other", "clients/tags:other")
    assert clients.list_tags(target, "clients/tags") == ["latest", "other", "v1", "v2"]


def test_skopeo_pull_back(
    target: Target, clients: Clients, images: ImageSet, tmp_path: Path
) -> None:
    """
    C{skopeo copy docker://... oci:...} pulls back, by tag and by digest,
    the manifest, config and layers pushed: the same digests, the same bytes.
    """
    image = images.single
    clients.push(target, images.layout, "single", "clients/pull:v1")
    out = tmp_path / "out"
    same_image(clients.pull(target, "clients/pull:v1", out, "by-tag"), image)
    same_image(clients.pull(target, f"clients/pull@{image.digest}", out, "by-digest"), image)
    layer = image.layers[0]
    response = target.request("GET", f"clients/pull/blobs/{layer.digest}")
    if target.kind == "txregistry-s3-redirect":
        # Blobs come from the bucket itself, through a presigned URL.
        assert response.status == 307, response.status
        response = target.request("GET", f"clients/pull/blobs/{layer.digest}", follow=True)
    assert response.status == 200
    assert sha256(response.body) == layer.digest
    for blob in (image.config, *image.layers):
        assert OCILayout(out).blob(blob.digest) == images.layout.blob(blob.digest)


def test_skopeo_delete(target: Target, clients: Clients, images: ImageSet) -> None:
    """
    C{skopeo delete} of a tag deletes the manifest it names, by digest: that
    tag and every other tag of the same manifest are gone, the manifest is
    unknown by digest, and another image in the repository is untouched.
    """
    for tag in ("v1", "alias"):
        clients.push(target, images.layout, "single", f"clients/delete:{tag}")
    clients.push(target, images.layout, "other", "clients/delete:other")
    assert clients.list_tags(target, "clients/delete") == ["alias", "other", "v1"]

    clients.skopeo(target, "delete", "--tls-verify=false", target.ref("clients/delete", "v1"))

    assert clients.list_tags(target, "clients/delete") == ["other"]
    with pytest.raises(CommandFailed) as failed:
        clients.inspect(target, "clients/delete:v1")
    assert "manifest unknown" in failed.value.result.stderr
    response = target.request(
        "HEAD", f"clients/delete/manifests/{images.single.digest}", headers={"Accept": OCI_MANIFEST}
    )
    assert response.status == 404
    assert clients.inspect(target, "clients/delete:other")["Digest"] == images.other.digest


def test_skopeo_index_all_platforms(
    target: Target, clients: Clients, images: ImageSet, tmp_path: Path
) -> None:
    """
    C{skopeo copy --all} pushes an index over two platforms (linux/amd64,
    linux/arm64) with its digest unchanged; each platform pulls back
    (C{--override-arch}) with the digests pushed.
    """
    index = images.multi
    digest = clients.push(target, images.layout, "multi", "clients/multi:v1", "--all")
    assert digest == index.digest
    assert clients.raw_manifest(target, "clients/multi:v1") == index.manifest_bytes
    response = target.request(
        "GET", "clients/multi/manifests/v1", headers={"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"}
    )
    assert response.status == 200
    assert response.header("Content-Type") == OCI_INDEX
    assert response.header("Docker-Content-Digest") == index.digest

    for architecture in ("amd64", "arm64"):
        pulled = clients.pull_platform(target, "clients/multi:v1", tmp_path / "out", architecture)
        same_image(pulled, index.for_arch(architecture))


def test_skopeo_docker_schema2(
    target: Target, clients: Clients, images: ImageSet, tmp_path: Path
) -> None:
    """
    C{skopeo copy --format v2s2} converts to Docker's schema 2 on the way:
    an image and a manifest list (C{--all}) are stored and served with
    Docker's media types, the same config and layers inside; each platform
    pulls back as stored (C{--preserve-digests} keeps Docker's manifest in
    the OCI layout).
    """
    repository = "clients/docker"
    image = images.single
    digest = clients.push(
        target, images.layout, "single", f"{repository}:v1", "--format", "v2s2", preserve=False
    )
    raw = clients.raw_manifest(target, f"{repository}:v1")
    assert sha256(raw) == digest
    manifest = json.loads(raw)
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"] == {
        "mediaType": DOCKER_CONFIG,
        "digest": image.config.digest,
        "size": image.config.size,
    }
    assert [layer["mediaType"] for layer in manifest["layers"]] == [DOCKER_LAYER] * 2
    assert [layer["digest"] for layer in manifest["layers"]] == image.layer_digests
    response = target.request(
        "GET", f"{repository}/manifests/v1", headers={"Accept": DOCKER_MANIFEST}
    )
    assert response.status == 200
    assert response.header("Content-Type") == DOCKER_MANIFEST
    assert response.header("Docker-Content-Digest") == digest
    assert response.body == raw

    digest = clients.push(
        target,
        images.layout,
        "multi",
        f"{repository}:multi",
        "--all",
        "--format",
        "v2s2",
        preserve=False,
    )
    raw = clients.raw_manifest(target, f"{repository}:multi")
    assert sha256(raw) == digest
    listed = json.loads(raw)
    assert listed["mediaType"] == DOCKER_LIST
    platforms = [entry["platform"]["architecture"] for entry in listed["manifests"]]
    assert platforms == ["amd64", "arm64"]
    for entry in listed["manifests"]:
        assert entry["mediaType"] == DOCKER_MANIFEST
        raw = clients.raw_manifest(target, f"{repository}@{entry['digest']}")
        assert sha256(raw) == entry["digest"]
        architecture = entry["platform"]["architecture"]
        pulled = clients.pull_platform(
            target, f"{repository}:multi", tmp_path / "out", architecture
        )
        assert pulled.manifest.digest == entry["digest"]
        assert pulled.manifest.media_type == DOCKER_MANIFEST
        same_content(pulled, images.multi.for_arch(architecture))


# -- podman (and buildah) --------------------------------------------------------------


def test_podman_push_pull(
    target: Target, clients: Clients, buildah_image: BuiltImage, tmp_path: Path
) -> None:
    """
    C{podman push} of an image buildah built, then C{podman pull} into
    another store, by tag and by digest: the same manifest digest, config
    and layers (as diff IDs) come back.
    """
    name = f"{target.host}/clients/podman:v1"
    digestfile = tmp_path / "digest"
    clients.run(
        "podman",
        [
            "push",
            "--tls-verify=false",
            "--digestfile",
            str(digestfile),
            buildah_image.name,
            name,
        ],
        target=target,
        store=buildah_image.store,
    )
    digest = digestfile.read_text().strip()
    inspected = clients.inspect(target, "clients/podman:v1")
    assert inspected["Digest"] == digest
    assert len(inspected["Layers"]) == 2

    store = clients.new_store(tmp_path / "pull-store")
    for reference in (name, f"{target.host}/clients/podman@{digest}"):
        clients.run("podman", ["pull", "--tls-verify=false", reference], target=target, store=store)
        [pulled] = json.loads(
            clients.run("podman", ["image", "inspect", reference], store=store).stdout
        )
        assert pulled["Digest"] == digest
        assert "sha256:" + pulled["Id"] == buildah_image.image_id
        assert tuple(pulled["RootFS"]["Layers"]) == buildah_image.diff_ids


# -- referrers (OCI Distribution 1.1) ----------------------------------------------------

SBOM = "application/vnd.example.sbom"
SIGNATURE = "application/vnd.example.signature"
CUSTOM_CONFIG = "application/vnd.example.config.v1+json"


# Distribution 2.8 predates OCI Distribution 1.1: it has no referrers API
# (GET /v2/<name>/referrers/<digest> is 404 there) and ignores "subject", so
# this test runs against txregistry only.
@pytest.mark.parametrize("kind", TXREGISTRY_KINDS, indirect=True)
def test_referrers(target: Target, clients: Clients, images: ImageSet) -> None:
    """
    Artifacts whose C{subject} is a pushed image are listed by
    C{GET /v2/<name>/referrers/<digest>} with their artifactType (given, or
    else their config's media type) and annotations; C{?artifactType=}
    filters the list and says so in C{OCI-Filters-Applied}; a digest nothing
    refers to has an empty list.
    """
    repository = "clients/referrers"
    image = images.single
    clients.push(target, images.layout, "single", f"{repository}:v1")
    subject = {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": image.manifest.size}
    empty = (OCI_EMPTY, b"{}")
    sbom = push_referrer(
        target,
        repository,
        subject,
        SBOM,
        empty,
        b'{"spdxVersion": "SPDX-2.3", "name": "test image"}\n',
        {"org.opencontainers.image.created": "2024-01-01T00:00:00Z", "org.example.format": "spdx"},
    )
    signature = push_referrer(
        target,
        repository,
        subject,
        SIGNATURE,
        empty,
        b"not really a signature\n",
        {"org.example.signed-by": "tests"},
    )
    untyped = push_referrer(
        target,
        repository,
        subject,
        None,
        (CUSTOM_CONFIG, b'{"kind": "custom"}'),
        b"an artifact with no artifactType\n",
        {"org.example.kind": "custom"},
    )

    response = target.request("GET", f"{repository}/referrers/{image.digest}")
    assert response.status == 200, response.body
    assert response.header("Content-Type") == OCI_INDEX
    assert response.header("OCI-Filters-Applied") is None
    listed = sorted(referrers(response), key=lambda descriptor: str(descriptor["digest"]))
    expected = sorted([sbom, signature, untyped], key=lambda descriptor: str(descriptor["digest"]))
    assert listed == expected

    response = target.request("GET", f"{repository}/referrers/{image.digest}?artifactType={SBOM}")
    assert response.status == 200, response.body
    assert response.header("Content-Type") == OCI_INDEX
    assert response.header("OCI-Filters-Applied") == "artifactType"
    assert referrers(response) == [sbom]

    response = target.request("GET", f"{repository}/referrers/{images.other.digest}")
    assert response.status == 200, response.body
    assert referrers(response) == []

    # The image itself is as it was.
    assert clients.inspect(target, f"{repository}:v1")["Digest"] == image.digest


# -- one data directory, two registries ---------------------------------------------------


@pytest.mark.parametrize("storage", ["filesystem", "s3"])
@pytest.mark.parametrize(
    ("writer", "reader"), [("reference", "txregistry"), ("txregistry", "reference")]
)
def test_data_directory_handover(
    writer: str,
    reader: str,
    storage: str,
    clients: Clients,
    images: ImageSet,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """
    Images skopeo pushed to one registry (a single image, and an index with
    C{--all}) are pulled by skopeo from the other, started afterwards over
    the same root (a folder, or a bucket through both registries' s3
    drivers): the same tags, the same digests all the way down.
    """
    root = tmp_path / "root"
    section: dict[str, Any] | None = None
    if storage == "s3":
        s3: S3ServerProcess = request.getfixturevalue("s3_server")
        bucket = f"handover-{writer}"
        s3.create_bucket(bucket)
        section = {**s3.storage_parameters(bucket, "/handover"), "delete": {"enabled": True}}
    first = Target(writer, root, tmp_path / writer, section).start()
    clients.allow(first)
    try:
        assert clients.push(first, images.layout, "single", "handover/single:v1") == (
            images.single.digest
        )
        assert clients.push(first, images.layout, "multi", "handover/multi:v1", "--all") == (
            images.multi.digest
        )
    finally:
        first.stop()
    assert not first.log_problems(), first.log_since(0)

    second = Target(reader, root, tmp_path / reader, section).start()
    clients.allow(second)
    try:
        assert clients.list_tags(second, "handover/single") == ["v1"]
        out = tmp_path / "out"
        same_image(clients.pull(second, "handover/single:v1", out, "single"), images.single)
        assert clients.raw_manifest(second, "handover/multi:v1") == images.multi.manifest_bytes
        for architecture in ("amd64", "arm64"):
            pulled = clients.pull_platform(second, "handover/multi:v1", out, architecture)
            same_image(pulled, images.multi.for_arch(architecture))
    finally:
        second.stop()
    assert not second.log_problems(), second.log_since(0)
