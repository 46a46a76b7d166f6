"""
Helpers for the real-client tests (C{test_clients.py}): images built
offline, deterministically, as OCI layouts; the registries under test; and
skopeo, buildah and podman run with configuration, storage and state of
their own in a temporary folder, talking to nothing but 127.0.0.1.

Images for skopeo are written here, in Python, as an OCI image layout
(U{https://github.com/opencontainers/image-spec/blob/main/image-layout.md}):
layers are tarballs with fixed metadata, gzipped with a zero timestamp, and
configs carry the epoch as their creation time, so the same calls give the
same digests every time, with no tool and no network.  (umoci builds
single images, not an index over two platforms, and stamps the time of day
into configs and history unless told otherwise.)  The image podman pushes
is built with buildah, in a store of its own; with C{commit --timestamp 0}
its config and layers are the same every time too.

What the clients touch outside their folder, running as root: containers/
image keeps its blob-info cache in C{/var/lib/containers/cache} whatever
the configuration says (the location is fixed for root); it only records
which registries hold which blobs (skopeo uses it to try cross-repository
mounts).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from txregistry.registry.manifest_formats import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from txregistry.testing.client import HTTPResponse, request
from txregistry.testing.process import REFERENCE_BINARY, RegistryProcess, base_config

# The tools the tests drive, and the Debian package that has each.
PACKAGES = {
    "skopeo": "skopeo",
    "buildah": "buildah",
    "podman": "podman",
    REFERENCE_BINARY: "docker-registry",
}

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"
EPOCH = "1970-01-01T00:00:00Z"

# Lines in a txregistry log that mean something went wrong inside it.
LOG_PROBLEMS = ("Traceback", "Unhandled", "unexpected error")


def require(tool: str) -> str:
    """The path of C{tool}; fail (never skip) naming its Debian package."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"{tool} is not installed; these tests need it: apt-get install {PACKAGES[tool]}",
            pytrace=False,
        )
    return path


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(document: Any) -> bytes:
    """JSON bytes with sorted keys and no spaces: the same every time."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def random_bytes(seed: str, size: int) -> bytes:
    """C{size} bytes that do not compress, the same for the same seed."""
    return random.Random(seed).randbytes(size)


# -- OCI image layouts -----------------------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    platform: Mapping[str, str] | None = None
    annotations: Mapping[str, str] | None = None
    artifact_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type is not None:
            document["artifactType"] = self.artifact_type
        if self.platform is not None:
            document["platform"] = dict(self.platform)
        if self.annotations is not None:
            document["annotations"] = dict(self.annotations)
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Descriptor:
        return cls(
            document["mediaType"],
            document["digest"],
            document["size"],
            document.get("platform"),
            document.get("annotations"),
            document.get("artifactType"),
        )


@dataclass(frozen=True)
class Image:
    """
    A single-platform image: its manifest (descriptor and bytes), config
    and layers, and the digests of the uncompressed layers.
    """

    manifest: Descriptor
    manifest_bytes: bytes
    config: Descriptor
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]
    platform: Mapping[str, str]

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def layer_digests(self) -> list[str]:
        return [layer.digest for layer in self.layers]


@dataclass(frozen=True)
class Index:
    """An image index over single-platform images."""

    manifest: Descriptor
    manifest_bytes: bytes
    images: tuple[Image, ...]

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def for_arch(self, architecture: str) -> Image:
        [image] = [i for i in self.images if i.platform["architecture"] == architecture]
        return image


def tar_layer(files: Mapping[str, bytes]) -> bytes:
    """
    An uncompressed layer tarball of C{files} (path: content) and their
    parent folders, in sorted order, owned by root, dated the epoch.
    """
    folders = sorted(
        {
            "/".join(path.split("/")[:depth])
            for path in files
            for depth in range(1, path.count("/") + 1)
        }
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for folder in folders:
            info = tarfile.TarInfo(folder + "/")
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for path in sorted(files):
            info = tarfile.TarInfo(path)
            info.size = len(files[path])
            info.mode = 0o755 if path.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(files[path]))
    return buffer.getvalue()


class OCILayout:
    """An OCI image layout folder, written or read."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, path: Path) -> OCILayout:
        (path / "blobs" / "sha256").mkdir(parents=True)
        (path / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
        layout = cls(path)
        layout._write_index([])
        return layout

    # -- blobs -------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        algorithm, hex_digest = digest.split(":", 1)
        return self.path / "blobs" / algorithm / hex_digest

    def blob(self, digest: str) -> bytes:
        data = self.blob_path(digest).read_bytes()
        assert sha256(data) == digest, f"{self.path}: blob {digest} does not match its digest"
        return data

    def write_blob(self, media_type: str, data: bytes, **extra: Any) -> Descriptor:
        descriptor = Descriptor(media_type, sha256(data), len(data), **extra)
        self.blob_path(descriptor.digest).write_bytes(data)
        return descriptor

    # -- the index -------------------------------------------------------------------

    def _write_index(self, manifests: list[dict[str, Any]]) -> None:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        (self.path / "index.json").write_bytes(canonical(index))

    def refs(self) -> dict[str, Descriptor]:
        """The descriptors of C{index.json}, by their ref name."""
        index = json.loads((self.path / "index.json").read_bytes())
        return {
            entry["annotations"][REF_NAME]: Descriptor.from_json(entry)
            for entry in index["manifests"]
            if REF_NAME in (entry.get("annotations") or {})
        }

    def tag(self, name: str, descriptor: Descriptor) -> None:
        """Name C{descriptor} C{name} in C{index.json}."""
        index = json.loads((self.path / "index.json").read_bytes())
        manifests = [
            entry
            for entry in index["manifests"]
            if (entry.get("annotations") or {}).get(REF_NAME) != name
        ]
        entry = Descriptor(descriptor.media_type, descriptor.digest, descriptor.size).to_json()
        entry["annotations"] = {REF_NAME: name}
        self._write_index([*manifests, entry])

    # -- writing images ----------------------------------------------------------------

    def add_image(
        self, layers: Sequence[Mapping[str, bytes]], architecture: str = "amd64", os: str = "linux"
    ) -> Image:
        """An image of C{layers} (each path: content) for one platform."""
        platform = {"architecture": architecture, "os": os}
        descriptors = []
        diff_ids = []
        for files in layers:
            tarball = tar_layer(files)
            diff_ids.append(sha256(tarball))
            descriptors.append(self.write_blob(OCI_LAYER, gzip.compress(tarball, mtime=0)))
        config = {
            "created": EPOCH,
            **platform,
            "config": {
                "Env": ["PATH=/bin"],
                "Cmd": ["/bin/hello"],
                "Labels": {"org.example.built-by": "txregistry client tests"},
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [
                {"created": EPOCH, "created_by": f"layer {n}: {', '.join(sorted(files))}"}
                for n, files in enumerate(layers)
            ],
        }
        config_descriptor = self.write_blob(OCI_CONFIG, canonical(config))
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_descriptor.to_json(),
            "layers": [descriptor.to_json() for descriptor in descriptors],
            "annotations": {"org.opencontainers.image.title": f"test image {architecture}"},
        }
        manifest_bytes = canonical(manifest)
        descriptor = self.write_blob(OCI_MANIFEST, manifest_bytes, platform=platform)
        return Image(
            descriptor,
            manifest_bytes,
            config_descriptor,
            tuple(descriptors),
            tuple(diff_ids),
            platform,
        )

    def add_index(self, images: Sequence[Image]) -> Index:
        """An image index over C{images}, each with its platform."""
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [image.manifest.to_json() for image in images],
        }
        index_bytes = canonical(index)
        return Index(self.write_blob(OCI_INDEX, index_bytes), index_bytes, tuple(images))

    # -- reading images ----------------------------------------------------------------

    def read_image(self, name: str) -> Image:
        """
        The image named C{name}, read back from the blobs (each checked
        against its digest).
        """
        descriptor = self.refs()[name]
        assert descriptor.media_type in (OCI_MANIFEST, DOCKER_MANIFEST), descriptor
        manifest_bytes = self.blob(descriptor.digest)
        manifest = json.loads(manifest_bytes)
        config_descriptor = Descriptor.from_json(manifest["config"])
        config = json.loads(self.blob(config_descriptor.digest))
        layers = tuple(Descriptor.from_json(layer) for layer in manifest["layers"])
        for layer in layers:
            assert len(self.blob(layer.digest)) == layer.size, layer
        return Image(
            descriptor,
            manifest_bytes,
            config_descriptor,
            layers,
            tuple(config["rootfs"]["diff_ids"]),
            {"architecture": config["architecture"], "os": config["os"]},
        )


@dataclass(frozen=True)
class ImageSet:
    """What the session's OCI layout holds, by ref name."""

    layout: OCILayout
    single: Image  # "single": two layers, linux/amd64
    multi: Index  # "multi": linux/amd64 and linux/arm64, sharing a base layer
    other: Image  # "other": one more image, to stand beside "single"


def build_test_images(path: Path) -> ImageSet:
    """The images the tests push, in a new OCI layout at C{path}."""
    layout = OCILayout.create(path)
    base = {
        "bin/hello": b"#!/bin/sh\necho hello\n",
        "usr/share/data/base.bin": random_bytes("base", 200_000),
    }
    single = layout.add_image(
        [
            base,
            {
                "etc/motd": b"txregistry client tests\n",
                "usr/share/data/app.bin": random_bytes("app", 100_000),
            },
        ]
    )
    platform_images = [
        layout.add_image(
            [base, {f"usr/share/data/{arch}.bin": random_bytes(arch, 50_000)}], architecture=arch
        )
        for arch in ("amd64", "arm64")
    ]
    multi = layout.add_index(platform_images)
    other = layout.add_image([{"etc/other": random_bytes("other", 30_000)}])
    layout.tag("single", single.manifest)
    layout.tag("multi", multi.manifest)
    layout.tag("other", other.manifest)
    for image in platform_images:
        layout.tag(image.platform["architecture"], image.manifest)
    return ImageSet(layout, single, multi, other)


# -- registries ------------------------------------------------------------------------


class Target:
    """
    A registry under test, as a process on 127.0.0.1: the reference
    (Distribution 2.8) or txregistry, over a filesystem root.
    """

    SECRET = "client-tests-secret"

    def __init__(
        self,
        kind: str,
        root: Path,
        workdir: Path,
        storage: dict[str, Any] | None = None,
        sections: Mapping[str, Any] | None = None,
    ) -> None:
        """
        @param kind: C{reference}, or a name starting with C{txregistry}.
        @param storage: a C{storage} config section replacing the
            filesystem one under C{root}.
        @param sections: more top-level config sections (C{redis}).
        """
        assert kind == "reference" or kind.startswith("txregistry"), kind
        if kind == "reference":
            require(REFERENCE_BINARY)
        self.kind = kind
        self.root = root
        config = base_config(root, http={"addr": "127.0.0.1:0", "secret": self.SECRET})
        if storage is not None:
            config["storage"] = storage
        config.update(sections or {})
        self.process = RegistryProcess(workdir, config, reference=kind == "reference", name=kind)

    def start(self) -> Target:
        self.process.start()
        return self

    def stop(self) -> None:
        self.process.stop()

    def __repr__(self) -> str:
        return f"<{self.kind} at {self.host}>"

    @property
    def host(self) -> str:
        """C{127.0.0.1:PORT}, as image references name it."""
        return f"127.0.0.1:{self.process.port}"

    def ref(self, repository: str, tag_or_digest: str = "") -> str:
        """A C{docker://} reference to C{repository} on this registry."""
        separator = "@" if ":" in tag_or_digest else ":"
        suffix = f"{separator}{tag_or_digest}" if tag_or_digest else ""
        return f"docker://{self.host}/{repository}{suffix}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        follow: bool = False,
    ) -> HTTPResponse:
        """
        One request to C{/v2/path}; never a 5xx.

        @param follow: follow a 307 to the storage (a presigned URL), as
            clients do, and answer with what the storage answered.
        """
        mark = self.log_mark()
        response = request(method, f"{self.process.url}/v2/{path}", body, headers)
        assert response.status < 500, (
            f"{self.kind}: {method} /v2/{path} answered {response.status}: "
            f"{response.body[:2000]!r}\n{self.log_since(mark)}"
        )
        if follow and response.status == 307:
            location = response.header("Location") or ""
            assert location.startswith("http://127.0.0.1:"), location
            response = request(method, location)
        return response

    # -- the log -----------------------------------------------------------------------

    def log_mark(self) -> int:
        try:
            return self.process.log_path.stat().st_size
        except OSError:
            return 0

    def _logged(self, mark: int) -> list[str]:
        try:
            with open(self.process.log_path, "rb") as log:
                log.seek(mark)
                return log.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []

    def log_since(self, mark: int, lines: int = 60) -> str:
        """The last C{lines} lines logged since C{mark}, as a block of text."""
        tail = self._logged(mark)[-lines:]
        return f"--- {self.kind} log ({self.process.log_path}) ---\n" + "\n".join(tail)

    def log_problems(self, mark: int = 0) -> list[str]:
        """Lines logged since C{mark} that say something went wrong (txregistry)."""
        if self.kind == "reference":
            return []
        return [line for line in self._logged(mark) if any(p in line for p in LOG_PROBLEMS)]


# -- the clients -----------------------------------------------------------------------


class CommandFailed(AssertionError):
    """A client command that exited with an error."""

    def __init__(self, message: str, result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(message)
        self.result = result


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Store:
    """
    A containers/storage store of one's own (vfs driver, which needs no
    mounts) and a containers.conf for podman's state.  podman refuses a run
    root longer than 50 characters, so that one is a new folder in
    C{/tmp}, removed by L{close}.
    """

    path: Path
    runroot: Path = field(init=False)

    def __post_init__(self) -> None:
        for folder in ("graph", "tmp"):
            (self.path / folder).mkdir(parents=True, exist_ok=True)
        self.runroot = Path(tempfile.mkdtemp(prefix="txr-run-", dir="/tmp"))
        self.storage_conf.write_text(
            "[storage]\n"
            'driver = "vfs"\n'
            f'graphroot = "{self.path / "graph"}"\n'
            f'runroot = "{self.runroot}"\n'
        )
        # podman keeps its libpod state below the graph root, but its
        # tmp_dir (default /run/libpod) and events log only where told.
        self.containers_conf.write_text(
            f'[engine]\nevents_logger = "none"\ntmp_dir = "{self.path / "tmp"}"\n'
        )

    @property
    def storage_conf(self) -> Path:
        return self.path / "storage.conf"

    @property
    def containers_conf(self) -> Path:
        return self.path / "containers.conf"

    def options(self) -> list[str]:
        """The global options that name this store (for buildah and podman)."""
        return [
            "--storage-driver",
            "vfs",
            "--root",
            str(self.path / "graph"),
            "--runroot",
            str(self.runroot),
        ]

    def close(self) -> None:
        """Remove the run root."""
        shutil.rmtree(self.runroot, ignore_errors=True)


@dataclass
class Clients:
    """
    skopeo, buildah and podman with a configuration of their own in
    C{folder}: a registries.conf with no unqualified-search registries and
    the registries under test marked insecure, an accept-anything signature
    policy, an empty auth file, no proxy; each command's output is kept for
    the failure message.
    """

    folder: Path
    insecure: list[str] = field(default_factory=list)
    stores: list[Store] = field(default_factory=list)
    commands: int = 0

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.auth.write_text("{}")
        (self.folder / "registries.d").mkdir(exist_ok=True)
        (self.folder / "tmp").mkdir(exist_ok=True)
        (self.folder / "home").mkdir(exist_ok=True)
        self.default_store = self.new_store(self.folder / "store")
        self._write_registries()

    def new_store(self, path: Path) -> Store:
        """A new store at C{path}, removed (its run root) by L{close}."""
        store = Store(path)
        self.stores.append(store)
        return store

    def close(self) -> None:
        for store in self.stores:
            store.close()

    @property
    def policy(self) -> Path:
        return self.folder / "policy.json"

    @property
    def auth(self) -> Path:
        return self.folder / "auth.json"

    @property
    def registries_conf(self) -> Path:
        return self.folder / "registries.conf"

    def _write_registries(self) -> None:
        lines = ["unqualified-search-registries = []", 'short-name-mode = "disabled"', ""]
        for host in self.insecure:
            lines += ["[[registry]]", f'location = "{host}"', "insecure = true", ""]
        self.registries_conf.write_text("\n".join(lines))

    def allow(self, target: Target) -> None:
        """Mark C{target} insecure (plain HTTP) in registries.conf."""
        if target.host not in self.insecure:
            self.insecure.append(target.host)
            self._write_registries()

    def environment(self, store: Store | None = None) -> dict[str, str]:
        store = store or self.default_store
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.lower().endswith("_proxy")
            and not key.startswith(("CONTAINERS_", "REGISTRY_", "BUILDAH_", "PODMAN_"))
        }
        environment.update(
            {
                "NO_PROXY": "*",
                "no_proxy": "*",
                "HOME": str(self.folder / "home"),
                "XDG_CONFIG_HOME": str(self.folder / "home" / ".config"),
                "XDG_RUNTIME_DIR": str(self.folder / "tmp"),
                "TMPDIR": str(self.folder / "tmp"),
                "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf),
                "CONTAINERS_STORAGE_CONF": str(store.storage_conf),
                "CONTAINERS_CONF": str(store.containers_conf),
                "REGISTRY_AUTH_FILE": str(self.auth),
            }
        )
        return environment

    def run(
        self,
        tool: str,
        arguments: Sequence[str],
        *,
        target: Target | None = None,
        store: Store | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """
        Run C{tool} with C{arguments}; unless C{check} is false, fail with
        its output and the log lines C{target} wrote meanwhile if it exits
        with an error.
        """
        binary = require(tool)
        if tool == "skopeo":
            # skopeo 1.9 ignores CONTAINERS_REGISTRIES_CONF; its (hidden)
            # --registries-conf option names the file.
            command = [
                binary,
                "--debug",
                "--policy",
                str(self.policy),
                "--registries-conf",
                str(self.registries_conf),
                "--registries.d",
                str(self.folder / "registries.d"),
                *arguments,
            ]
        elif tool == "podman":
            command = [binary, "--log-level=debug", *(store or self.default_store).options()]
            command += arguments
        else:
            command = [binary, *(store or self.default_store).options(), *arguments]
        mark = target.log_mark() if target is not None else 0
        self.commands += 1
        started = time.monotonic()
        try:
            result = subprocess.run(
                command,
                env=self.environment(store),
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=self.folder,
            )
        except subprocess.TimeoutExpired as error:
            log = target.log_since(mark) if target is not None else ""
            raise AssertionError(f"timed out after {timeout}s: {command}\n{error}\n{log}") from None
        elapsed = time.monotonic() - started
        if check and result.returncode != 0:
            log = target.log_since(mark) if target is not None else ""
            raise CommandFailed(
                f"{' '.join(command)}\nexited with {result.returncode} after {elapsed:.1f}s\n"
                f"--- stdout ---\n{_tail(result.stdout)}\n--- stderr ---\n{_tail(result.stderr)}\n"
                f"{log}",
                result,
            )
        return result

    # -- skopeo ----------------------------------------------------------------------

    def skopeo(self, target: Target | None, *arguments: str, **options: Any) -> str:
        """Run skopeo; its standard output."""
        return self.run("skopeo", arguments, target=target, **options).stdout

    def push(
        self,
        target: Target,
        layout: OCILayout,
        name: str,
        destination: str,
        *extra: str,
        preserve: bool = True,
    ) -> str:
        """
        C{skopeo copy} the image named C{name} in C{layout} to
        C{destination} (C{repository:tag}) on C{target}, its digests
        preserved unless C{preserve} is false; the digest skopeo reports.
        (skopeo 1.9 silently ignores C{--format} with C{--preserve-digests}.)
        """
        digestfile = self.folder / "tmp" / f"digest-{self.commands}"
        self.skopeo(
            target,
            "copy",
            *(["--preserve-digests"] if preserve else []),
            "--dest-tls-verify=false",
            "--digestfile",
            str(digestfile),
            *extra,
            f"oci:{layout.path}:{name}",
            f"docker://{target.host}/{destination}",
        )
        return digestfile.read_text().strip()

    def pull(self, target: Target, source: str, layout_path: Path, name: str, *extra: str) -> Image:
        """
        C{skopeo copy} C{source} (C{repository:tag} or C{repository@digest})
        from C{target} into the OCI layout at C{layout_path}, named C{name};
        the image, read back from the layout.
        """
        self.skopeo(
            target,
            *extra,
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            f"docker://{target.host}/{source}",
            f"oci:{layout_path}:{name}",
        )
        return OCILayout(layout_path).read_image(name)

    def pull_platform(
        self, target: Target, source: str, layout_path: Path, architecture: str
    ) -> Image:
        """L{pull} the linux/C{architecture} image of the index C{source}, named C{architecture}."""
        return self.pull(
            target,
            source,
            layout_path,
            architecture,
            "--override-os",
            "linux",
            "--override-arch",
            architecture,
        )

    def inspect(self, target: Target, source: str, *extra: str) -> Any:
        """C{skopeo inspect} of C{source} on C{target}, parsed."""
        output = self.skopeo(
            target, "inspect", "--tls-verify=false", *extra, f"docker://{target.host}/{source}"
        )
        return json.loads(output)

    def raw_manifest(self, target: Target, source: str) -> bytes:
        """The manifest of C{source} as skopeo fetched it (C{inspect --raw})."""
        return self.run(
            "skopeo",
            ["inspect", "--tls-verify=false", "--raw", f"docker://{target.host}/{source}"],
            target=target,
        ).stdout.encode()

    def list_tags(self, target: Target, repository: str) -> list[str]:
        output = self.skopeo(
            target, "list-tags", "--tls-verify=false", f"docker://{target.host}/{repository}"
        )
        document = json.loads(output)
        assert document["Repository"] == f"{target.host}/{repository}", document
        return sorted(document["Tags"] or [])


def same_image(pulled: Image, pushed: Image) -> None:
    """Assert that C{pulled} has the digests and platform C{pushed} has."""
    assert pulled.manifest.digest == pushed.manifest.digest
    assert pulled.manifest_bytes == pushed.manifest_bytes
    same_content(pulled, pushed)


def same_content(pulled: Image, pushed: Image) -> None:
    """
    Assert that C{pulled} has the config, layers and platform C{pushed} has
    (its manifest may differ: converted to another format and back).
    """
    assert pulled.config.digest == pushed.config.digest
    assert pulled.layer_digests == pushed.layer_digests
    assert pulled.diff_ids == pushed.diff_ids
    assert pulled.platform == pushed.platform


# -- buildah ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltImage:
    """An image buildah committed to a store: its name, config digest and diff IDs."""

    name: str
    image_id: str
    diff_ids: tuple[str, ...]
    store: Store


def build_with_buildah(clients: Clients, store: Store, context: Path) -> BuiltImage:
    """
    Build C{localhost/clients/buildah:v1} in C{store}: from scratch, two
    commits, so two layers, dated the epoch.
    """
    context.mkdir(parents=True, exist_ok=True)
    (context / "hello").write_text("#!/bin/sh\necho hello from buildah\n")
    (context / "base.bin").write_bytes(random_bytes("buildah-base", 150_000))
    (context / "app.bin").write_bytes(random_bytes("buildah-app", 80_000))

    def buildah(*arguments: str) -> str:
        return clients.run("buildah", arguments, store=store).stdout.strip()

    base = "localhost/clients/buildah-base:v1"
    name = "localhost/clients/buildah:v1"
    container = buildah("from", "--name", "clients-base", "--pull=never", "scratch")
    buildah("copy", container, str(context / "hello"), "/bin/hello")
    buildah("copy", container, str(context / "base.bin"), "/usr/share/data/base.bin")
    buildah("config", "--os", "linux", "--arch", "amd64", "--cmd", "/bin/hello", container)
    buildah("commit", "--timestamp", "0", "--format", "oci", "--rm", container, base)
    container = buildah("from", "--name", "clients-app", "--pull=never", base)
    buildah("copy", container, str(context / "app.bin"), "/usr/share/data/app.bin")
    buildah("commit", "--timestamp", "0", "--format", "oci", "--rm", container, name)
    [inspected] = json.loads(clients.run("podman", ["image", "inspect", name], store=store).stdout)
    diff_ids = tuple(inspected["RootFS"]["Layers"])
    assert len(diff_ids) == 2, inspected
    return BuiltImage(name, "sha256:" + inspected["Id"], diff_ids, store)


def client_hello() -> bytes:
    """
    The first bytes a TLS client sends (a ClientHello record), as a client
    probing C{https://} on a plain-HTTP port sends them.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    connection = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    try:
        connection.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    assert hello[:1] == b"\x16", hello[:16]
    return hello


def push_blob(target: Target, repository: str, data: bytes) -> str:
    """A monolithic upload (C{POST ?digest=}); the digest."""
    digest = sha256(data)
    response = target.request("POST", f"{repository}/blobs/uploads/?digest={digest}", data)
    assert response.status == 201, response.body
    return digest


def push_referrer(
    target: Target,
    repository: str,
    subject: dict[str, object],
    artifact_type: str | None,
    config: tuple[str, bytes],
    layer: bytes,
    annotations: dict[str, str],
) -> dict[str, object]:
    """
    PUT, by digest, an image manifest whose C{subject} is C{subject}; the
    descriptor a referrers list should give for it.
    """
    config_type, config_data = config
    push_blob(target, repository, config_data)
    push_blob(target, repository, layer)
    manifest: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": config_type,
            "digest": sha256(config_data),
            "size": len(config_data),
        },
        "layers": [
            {"mediaType": "application/octet-stream", "digest": sha256(layer), "size": len(layer)}
        ],
        "subject": subject,
        "annotations": annotations,
    }
    if artifact_type is not None:
        manifest["artifactType"] = artifact_type
    body = canonical(manifest)
    digest = sha256(body)
    response = target.request(
        "PUT", f"{repository}/manifests/{digest}", body, {"Content-Type": OCI_MANIFEST}
    )
    assert response.status == 201, response.body
    assert response.header("Docker-Content-Digest") == digest
    assert response.header("OCI-Subject") == subject["digest"]
    return {
        "mediaType": OCI_MANIFEST,
        "digest": digest,
        "size": len(body),
        "artifactType": artifact_type or config_type,
        "annotations": annotations,
    }


def answer_to(host: str, port: int, data: bytes, within: float) -> tuple[bytes, float]:
    """
    Send C{data} on a new connection: the first bytes the server answers
    (b"" if it closes the connection, b"<silence>" if nothing happens
    C{within} seconds), and after how long.
    """
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=within) as connection:
        connection.sendall(data)
        try:
            answer = connection.recv(4096)
        except TimeoutError:
            return b"<silence>", time.monotonic() - started
        except ConnectionResetError:
            answer = b""
    return answer, time.monotonic() - started


def referrers(response: HTTPResponse) -> list[dict[str, Any]]:
    """The descriptors of a referrers response (an image index)."""
    document = response.json()
    assert document["schemaVersion"] == 2, document
    assert document["mediaType"] == OCI_INDEX, document
    manifests: list[dict[str, Any]] = document["manifests"]
    return manifests
