"""
The pull-through cache with real clients and real upstreams, all on
127.0.0.1: Distribution 2.8 (C{docker-registry}) and txregistry as
upstream, each anonymous and behind the test token server.  skopeo pushes
an image and an index to the upstream; skopeo (by tag, by digest, the
index with C{--all} and C{--multi-arch all}) and podman (by tag) pull them
through a txregistry whose C{proxy.remoteurl} is that upstream; then the
upstream is stopped and everything is pulled again, into fresh
destinations, from the cache alone.  Both rounds see the digests pushed,
and the upstream served each blob once.

The upstream and the cache live for the module (one pair per upstream);
L{test_pulls_with_upstream_stopped} stops the upstream, so it comes last.
The tools are Debian packages (skopeo, podman, docker-registry); as in
C{test_clients}, a missing one fails the tests, naming its package.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clients import (
    Clients,
    Image,
    ImageSet,
    OCILayout,
    Target,
    same_image,
    sha256,
)
from txregistry.registry.manifest_formats import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
)
from txregistry.testing.tokenserver import TokenServer, TokenUser

# Who may do what upstream, when it wants tokens: the tests push as the
# pusher; the cache signs in as the puller, whom the token server grants
# pull only.
PUSHER, PUSHER_PASSWORD = "pusher", "push-secret-41c9"
PULLER, PULLER_PASSWORD = "puller", "pull-secret-9e2d"

SINGLE, MULTI = "proxied/single", "proxied/multi"
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])

# (registry, auth) of each upstream.
UPSTREAMS = {
    "docker-registry": ("reference", "anonymous"),
    "docker-registry-token": ("reference", "token"),
    "txregistry": ("txregistry-upstream", "anonymous"),
    "txregistry-token": ("txregistry-upstream", "token"),
}


# -- the upstream and the cache ----------------------------------------------------------


@dataclass
class Upstream:
    """
    The registry the cache pulls from, with the token server it trusts
    (L{None} when anonymous), holding the test images skopeo pushed.
    """

    target: Target
    tokens: TokenServer | None

    @property
    def credentials(self) -> dict[str, str]:
        """The C{proxy} keys that sign the cache in upstream."""
        if self.tokens is None:
            return {}
        return {"username": PULLER, "password": PULLER_PASSWORD}

    def stop(self) -> None:
        self.target.stop()
        if self.tokens is not None:
            self.tokens.stop()

    def blob_gets(self, digest: str) -> int:
        """
        How many GETs of the blob, in any repository, the upstream's access
        log holds: both registries log a request as C{"GET /v2/... HTTP/1.1"}
        (Distribution's other lines about it say C{method=GET}, unquoted).
        """
        pattern = re.compile(rf'"GET /v2/\S+/blobs/{re.escape(digest)} HTTP/1\.[01]"')
        text = self.target.process.log_path.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if pattern.search(line))


@pytest.fixture(scope="module", params=list(UPSTREAMS))
def upstream(
    request: pytest.FixtureRequest,
    clients: Clients,
    images: ImageSet,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Upstream]:
    """
    An upstream registry (which one and how it signs in: the param), the
    image pushed to C{proxied/single:v1} and the index to
    C{proxied/multi:v1}, with skopeo.
    """
    kind, auth = UPSTREAMS[request.param]
    workdir = tmp_path_factory.mktemp(f"upstream-{request.param}")
    tokens: TokenServer | None = None
    sections = None
    push_options: list[str] = []
    if auth == "token":
        users = {
            PUSHER: TokenUser(PUSHER_PASSWORD, {"repository:*": ["pull", "push"]}),
            PULLER: TokenUser(PULLER_PASSWORD, {"repository:*": ["pull"]}),
        }
        tokens = TokenServer(workdir / "tokens", users).start()
        sections = {"auth": tokens.auth_section()}
        push_options = ["--dest-creds", f"{PUSHER}:{PUSHER_PASSWORD}"]
    server = Upstream(Target(kind, workdir / "root", workdir, sections=sections), tokens)
    try:
        server.target.start()
        clients.allow(server.target)
        target = server.target
        pushed = clients.push(target, images.layout, "single", f"{SINGLE}:v1", *push_options)
        assert pushed == images.single.digest
        pushed = clients.push(target, images.layout, "multi", f"{MULTI}:v1", "--all", *push_options)
        assert pushed == images.multi.digest
        yield server
    finally:
        server.stop()
    problems = server.target.log_problems()
    assert not problems, f"the upstream {request.param} logged:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def proxy(
    upstream: Upstream, clients: Clients, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """A txregistry caching C{upstream}, answering from storage when upstream is slow."""
    workdir = tmp_path_factory.mktemp("proxy")
    section = {"remoteurl": upstream.target.process.url, "checktimeout": "1s"}
    section.update(upstream.credentials)
    cache = Target("txregistry-proxy", workdir / "root", workdir, sections={"proxy": section})
    cache.start()
    clients.allow(cache)
    try:
        yield cache
    finally:
        cache.stop()
    assert_log_clean(cache)


def assert_log_clean(cache: Target) -> None:
    """Assert that the cache has logged no traceback so far."""
    problems = cache.log_problems()
    assert not problems, "the cache logged:\n" + "\n".join(problems)


# -- pulling through ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pulled:
    """
    What one round of pulls through the cache got.

    @ivar digests: what each way of pulling saw (a manifest's digest, most
        of them), by a name of that way (C{"podman pull single:v1"}).
    @ivar images: the single image as skopeo copied it, by tag and by digest.
    """

    digests: dict[str, str]
    images: dict[str, Image]


def expected_digests(images: ImageSet) -> dict[str, str]:
    """What L{pull_everything} must see: what was pushed."""
    single, multi = images.single.digest, images.multi.digest
    amd64, arm64 = (images.multi.for_arch(arch) for arch in ("amd64", "arm64"))
    expected = {
        "Docker-Content-Digest single:v1": single,
        "Docker-Content-Digest multi:v1": multi,
        "skopeo inspect --raw single:v1": single,
        "skopeo inspect --raw multi:v1": multi,
        "skopeo copy single:v1": single,
        "skopeo copy single@digest": single,
    }
    for way in ("--all multi:v1", "--multi-arch=all multi@digest"):
        expected[f"skopeo copy {way}"] = multi
        expected[f"skopeo copy {way} amd64"] = amd64.digest
        expected[f"skopeo copy {way} arm64"] = arm64.digest
    # For a list, podman's image is the platform's, named by the list's
    # digest; its repository digests are the list's and the platform's.
    for short, image, named in (
        ("single", images.single, [single]),
        ("multi", amd64, [multi, amd64.digest]),
    ):
        expected[f"podman pull {short}:v1"] = named[0]
        expected[f"podman pull {short}:v1 RepoDigests"] = " ".join(sorted(named))
        expected[f"podman pull {short}:v1 Id"] = image.config.digest
        expected[f"podman pull {short}:v1 layers"] = " ".join(image.diff_ids)
    return expected


def read_index(layout: OCILayout, name: str) -> dict[str, str]:
    """
    The index named C{name} in C{layout}: its digest (under C{""}) and its
    manifests' by architecture, every blob they name checked present and
    matching its digest.
    """
    descriptor = layout.refs()[name]
    assert descriptor.media_type == OCI_INDEX, descriptor
    digests = {"": descriptor.digest}
    for entry in json.loads(layout.blob(descriptor.digest))["manifests"]:
        manifest = json.loads(layout.blob(entry["digest"]))
        for blob in (manifest["config"], *manifest["layers"]):
            assert len(layout.blob(blob["digest"])) == blob["size"], blob
        digests[entry["platform"]["architecture"]] = entry["digest"]
    return digests


def pull_everything(clients: Clients, proxy: Target, images: ImageSet, folder: Path) -> Pulled:
    """
    Pull the test images through the cache: the manifests' heads over
    HTTP, C{skopeo inspect --raw}, C{skopeo copy} of the image by tag and
    by digest and of the index (every platform) by tag and by digest, and
    C{podman pull} of both by tag.  Each copy or pull goes to a new
    destination under C{folder} (an OCI layout, a podman store), so that
    no client skips a blob it already has: the index's platforms share
    their base layer with the image.
    """
    digests: dict[str, str] = {}
    for short, repository in (("single", SINGLE), ("multi", MULTI)):
        response = proxy.request("HEAD", f"{repository}/manifests/v1", headers={"Accept": ACCEPT})
        assert response.status == 200, (repository, response.status)
        digests[f"Docker-Content-Digest {short}:v1"] = str(response.header("Docker-Content-Digest"))
        raw = clients.raw_manifest(proxy, f"{repository}:v1")
        digests[f"skopeo inspect --raw {short}:v1"] = sha256(raw)

    pulled: dict[str, Image] = {}
    for way, layout, source in (
        ("single:v1", "single-by-tag", f"{SINGLE}:v1"),
        ("single@digest", "single-by-digest", f"{SINGLE}@{images.single.digest}"),
    ):
        pulled[way] = clients.pull(proxy, source, folder / layout, "image")
        digests[f"skopeo copy {way}"] = pulled[way].digest

    for way, layout, source in (
        ("--all multi:v1", "multi-by-tag", f"{MULTI}:v1"),
        ("--multi-arch=all multi@digest", "multi-by-digest", f"{MULTI}@{images.multi.digest}"),
    ):
        option = way.split()[0]
        clients.skopeo(
            proxy,
            "copy",
            option,
            "--preserve-digests",
            "--src-tls-verify=false",
            f"docker://{proxy.host}/{source}",
            f"oci:{folder / layout}:index",
        )
        for architecture, digest in read_index(OCILayout(folder / layout), "index").items():
            digests[f"skopeo copy {way} {architecture}".rstrip()] = digest

    for short, repository in (("single", SINGLE), ("multi", MULTI)):
        store = clients.new_store(folder / f"podman-{short}")
        reference = f"{proxy.host}/{repository}:v1"
        clients.run("podman", ["pull", "--tls-verify=false", reference], target=proxy, store=store)
        [inspected] = json.loads(
            clients.run("podman", ["image", "inspect", reference], store=store).stdout
        )
        way = f"podman pull {short}:v1"
        digests[way] = inspected["Digest"]
        named = sorted(name.split("@", 1)[1] for name in inspected["RepoDigests"])
        digests[f"{way} RepoDigests"] = " ".join(named)
        digests[f"{way} Id"] = "sha256:" + inspected["Id"]
        digests[f"{way} layers"] = " ".join(inspected["RootFS"]["Layers"])
    return Pulled(digests, pulled)


@pytest.fixture(scope="module")
def first_pulls(
    upstream: Upstream,
    proxy: Target,
    clients: Clients,
    images: ImageSet,
    tmp_path_factory: pytest.TempPathFactory,
) -> Pulled:
    """Everything pulled once through the cache, upstream running."""
    return pull_everything(clients, proxy, images, tmp_path_factory.mktemp("first-pulls"))


def check_pulled(pulled: Pulled, images: ImageSet) -> None:
    """Assert that a round of pulls saw the digests, manifests and blobs pushed."""
    assert pulled.digests == expected_digests(images)
    for image in pulled.images.values():
        same_image(image, images.single)


# -- the tests ------------------------------------------------------------------------------


def test_pulls_through_the_cache(
    first_pulls: Pulled, upstream: Upstream, proxy: Target, images: ImageSet
) -> None:
    """
    skopeo and podman pull, through the cache, the image and the index
    pushed upstream: the manifests' digests and bytes, configs and layers
    are the ones pushed.  Behind the token server, the cache signed in as
    the puller, for each repository's pull scope.
    """
    check_pulled(first_pulls, images)
    if upstream.tokens is not None:
        requests = upstream.tokens.requests
        asked = {(r.account, r.scopes, r.status) for r in requests if r.account != PUSHER}
        assert asked == {
            (PULLER, (f"repository:{SINGLE}:pull",), 200),
            (PULLER, (f"repository:{MULTI}:pull",), 200),
        }
    assert_log_clean(proxy)


def test_pulls_with_upstream_stopped(
    first_pulls: Pulled,
    upstream: Upstream,
    proxy: Target,
    clients: Clients,
    images: ImageSet,
    tmp_path: Path,
) -> None:
    """
    With the upstream (and its token server) stopped, everything pulls
    again from the cache into fresh destinations, with the same digests;
    over both rounds, the upstream served each blob once.
    """
    upstream.stop()
    again = pull_everything(clients, proxy, images, tmp_path)
    check_pulled(again, images)
    assert again.digests == first_pulls.digests

    pushed = (images.single, *images.multi.images)
    blobs = sorted(
        {blob for image in pushed for blob in (image.config.digest, *image.layer_digests)}
    )
    assert {digest: upstream.blob_gets(digest) for digest in blobs} == dict.fromkeys(blobs, 1)
    assert_log_clean(proxy)
