"""
txregistry's garbage collection against Distribution 2.8's
(C{docker-registry garbage-collect}) on two copies of one data folder, which
real clients filled through txregistry (see L{test_gc_clients.populate}).

Without C{--delete-untagged} both delete the same files, except that
txregistry also removes the repositories' links to the blobs it deletes.
With it, the differences are exactly what txregistry keeps and Distribution
does not: the platform images of a tagged index (Distribution's issue 3178)
and the signatures of a kept image, with their blobs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clients import OCI_MANIFEST, Clients, ImageSet, Target, canonical, push_blob, require, sha256
from test_gc_clients import Pushed, populate
from txregistry.testing.process import REFERENCE_BINARY

V2 = Path("docker/registry/v2")


def files(root: Path) -> set[str]:
    """Every file below C{root}, relative to it."""
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


def blob_file(digest: str) -> str:
    hex_part = digest.split(":")[1]
    return str(V2 / "blobs" / "sha256" / hex_part[:2] / hex_part / "data")


def revision_file(repository: str, digest: str) -> str:
    hex_part = digest.split(":")[1]
    return str(V2 / "repositories" / repository / "_manifests/revisions/sha256" / hex_part / "link")


def layer_link_file(repository: str, digest: str) -> str:
    hex_part = digest.split(":")[1]
    return str(V2 / "repositories" / repository / "_layers/sha256" / hex_part / "link")


def manifest_blobs(root: Path, digest: str) -> set[str]:
    """The blob files of a stored image manifest: itself, its config and layers."""
    document = json.loads((root / blob_file(digest)).read_bytes())
    digests = [
        digest,
        document["config"]["digest"],
        *(layer["digest"] for layer in document["layers"]),
    ]
    return {blob_file(d) for d in digests}


@pytest.fixture(scope="module")
def data_folder(
    tmp_path_factory: pytest.TempPathFactory, clients: Clients, images: ImageSet
) -> tuple[Path, Pushed]:
    """A data folder filled by real clients through txregistry, and what they pushed."""
    require(REFERENCE_BINARY)
    work = tmp_path_factory.mktemp("gc-side-by-side")
    target = Target("txregistry", work / "root", work / "process").start()
    try:
        clients.allow(target)
        pushed = populate(target, clients, images)
        # An image of its own, deleted by digest: its blobs are unreferenced.
        config_data = b'{"architecture": "amd64", "os": "linux"}'
        layer_data = b"a layer only gc/gone had\n"
        config = push_blob(target, "gc/gone", config_data)
        layer = push_blob(target, "gc/gone", layer_data)
        manifest = canonical(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config,
                    "size": len(config_data),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer,
                        "size": len(layer_data),
                    }
                ],
            }
        )
        response = target.request(
            "PUT", "gc/gone/manifests/x", manifest, {"Content-Type": OCI_MANIFEST}
        )
        assert response.status == 201, response.body
        response = target.request("DELETE", f"gc/gone/manifests/{sha256(manifest)}")
        assert response.status == 202, response.body
        pushed.gone_blobs += [config, layer, sha256(manifest)]
    finally:
        target.stop()
    return work / "root", pushed


def collect_both(data: Path, work: Path, *flags: str) -> tuple[set[str], set[str], Path]:
    """
    Copy C{data} twice, collect one copy with each registry; the files each
    deleted, and the copy txregistry collected.
    """
    before = files(data)
    deleted = []
    for name, command in (
        ("distribution", [shutil.which(REFERENCE_BINARY) or REFERENCE_BINARY, "garbage-collect"]),
        ("txregistry", [sys.executable, "-m", "txregistry", "garbage-collect", "--min-age", "0s"]),
    ):
        copy = work / name
        shutil.copytree(data, copy)
        config = work / f"{name}.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "version": 0.1,
                    "storage": {
                        "filesystem": {"rootdirectory": str(copy)},
                        "delete": {"enabled": True},
                    },
                }
            )
        )
        result = subprocess.run(
            [*command, *flags, str(config)], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"{name}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
        deleted.append(before - files(copy))
    return deleted[0], deleted[1], work / "txregistry"


def test_same_files_deleted(data_folder: tuple[Path, Pushed], tmp_path: Path) -> None:
    data, pushed = data_folder
    by_distribution, by_us, _ = collect_both(data, tmp_path)
    gone = {blob_file(digest) for digest in (pushed.orphan, *pushed.gone_blobs[-3:])}
    assert by_distribution == gone
    # Ours also removes the repositories' links to the blobs it deletes.
    links = {layer_link_file("gc/app", pushed.orphan)} | {
        layer_link_file("gc/gone", digest) for digest in pushed.gone_blobs[-3:-1]
    }
    assert by_us - by_distribution == links
    assert by_distribution - by_us == set()


def test_delete_untagged_differences(
    data_folder: tuple[Path, Pushed], images: ImageSet, tmp_path: Path
) -> None:
    data, pushed = data_folder
    by_distribution, by_us, _ = collect_both(data, tmp_path, "--delete-untagged")
    # What txregistry keeps and Distribution 2.8 deletes: the platform
    # images of the tagged index (their revisions, configs and own layers;
    # Distribution keeps their manifests' bytes, which the index marks) ...
    kept_by_us_only = set()
    base = images.single.layers[0].digest
    for image in images.multi.images:
        kept_by_us_only.add(revision_file("gc/multi", image.digest))
        kept_by_us_only |= manifest_blobs(data, image.digest) - {
            blob_file(image.digest),
            blob_file(base),
        }
    # ... and the signature of the kept image, and the signature of that.
    for digest in (pushed.signature, pushed.countersignature):
        kept_by_us_only.add(revision_file("gc/app", digest))
        kept_by_us_only |= manifest_blobs(data, digest)
    assert by_distribution - by_us == kept_by_us_only
    # What txregistry deletes and Distribution leaves: the links to deleted
    # blobs, and the referrers entry of the deleted image's signature.
    extra = by_us - by_distribution
    referrers_entry = (
        f"{V2}/repositories/gc/app/_manifests/referrers/sha256/{images.other.digest.split(':')[1]}"
        f"/sha256/{pushed.other_signature.split(':')[1]}/link"
    )
    assert referrers_entry in extra
    links = extra - {referrers_entry}
    assert links and all("/_layers/sha256/" in path for path in links)
    deleted_blobs = {path for path in by_us if path.startswith(f"{V2}/blobs/")}
    for path in links:
        hex_part = path.split("/")[-2]
        assert f"{V2}/blobs/sha256/{hex_part[:2]}/{hex_part}/data" in deleted_blobs, path
