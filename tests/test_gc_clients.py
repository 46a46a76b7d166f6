"""
Garbage collection of what real clients pushed: skopeo pushes images and a
multi-arch index, artifacts with a subject are pushed as oras would (plain
HTTP), some of it is untagged or deleted, and then the collector runs: as
C{txregistry garbage-collect} beside the running registry on the filesystem
and on S3 (moto), and inside the registry (C{storage.gc}) on in-memory
storage, which no other process can reach.  Afterwards every kept image
pulls back byte for byte, and what is gone was unreachable.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from clients import (
    OCI_MANIFEST,
    Clients,
    Image,
    ImageSet,
    Target,
    push_blob,
    push_referrer,
    referrers,
    same_image,
)
from txregistry.testing.s3server import S3ServerProcess

SIGNATURE = "application/vnd.example.signature"
SIGNATURE_CONFIG = "application/vnd.example.signature.config.v1+json"
STORAGES = ["filesystem", "s3", "inmemory"]
# The in-memory registry collects by itself: what it may delete must be
# this old, so that a push in progress is never a candidate.
ONLINE_MIN_AGE = 4.0


def descriptor(image: Image) -> dict[str, object]:
    return {
        "mediaType": image.manifest.media_type,
        "digest": image.manifest.digest,
        "size": image.manifest.size,
    }


def sign(target: Target, repository: str, subject: dict[str, object], name: str) -> str:
    """Push a signature artifact of C{subject}, untagged; its digest."""
    pushed = push_referrer(
        target,
        repository,
        subject,
        SIGNATURE,
        (SIGNATURE_CONFIG, f'{{"signs": "{name}"}}'.encode()),
        f"signature {name}\n".encode(),
        {"org.example.signature": name},
    )
    return str(pushed["digest"])


@dataclass
class Pushed:
    """What the scenario pushed, and what collection must keep or delete."""

    signature: str = ""
    countersignature: str = ""
    other_signature: str = ""
    orphan: str = ""
    gone_blobs: list[str] = field(default_factory=list)


def populate(target: Target, clients: Clients, images: ImageSet) -> Pushed:
    """
    C{gc/app}: C{single} tagged v1, signed, the signature signed again;
    C{other} pushed as v2, signed, then untagged (OCI's delete by tag); an
    orphan blob.  C{gc/multi}: the index over two platforms, tagged.
    C{gc/shared}: C{single} pushed, then its manifest deleted by digest.
    """
    pushed = Pushed()
    clients.push(target, images.layout, "single", "gc/app:v1")
    clients.push(target, images.layout, "other", "gc/app:v2")
    pushed.signature = sign(target, "gc/app", descriptor(images.single), "single")
    countersigned = {"mediaType": OCI_MANIFEST, "digest": pushed.signature}
    countersigned["size"] = len(target.request("GET", f"gc/app/manifests/{pushed.signature}").body)
    pushed.countersignature = sign(target, "gc/app", countersigned, "signature")
    pushed.other_signature = sign(target, "gc/app", descriptor(images.other), "other")
    response = target.request("DELETE", "gc/app/manifests/v2")
    assert response.status == 202, response.body
    pushed.orphan = push_blob(target, "gc/app", b"a blob no manifest references\n")
    clients.push(target, images.layout, "multi", "gc/multi:latest", "--all")
    clients.push(target, images.layout, "single", "gc/shared:latest")
    response = target.request("DELETE", f"gc/shared/manifests/{images.single.digest}")
    assert response.status == 202, response.body
    other = images.other
    pushed.gone_blobs = [
        pushed.orphan,
        other.manifest.digest,
        other.config.digest,
        *(layer.digest for layer in other.layers),
        pushed.other_signature,
    ]
    return pushed


def assert_kept(
    target: Target, clients: Clients, images: ImageSet, out: Path, pushed: Pushed
) -> None:
    """Every kept image pulls back whole; signatures stay with their image."""
    same_image(clients.pull(target, "gc/app:v1", out, "v1"), images.single)
    for image in images.multi.images:
        architecture = image.platform["architecture"]
        pulled = clients.pull_platform(target, "gc/multi:latest", out / "multi", architecture)
        same_image(pulled, image)
    for digest in (pushed.signature, pushed.countersignature):
        response = target.request(
            "GET", f"gc/app/manifests/{digest}", headers={"Accept": OCI_MANIFEST}
        )
        assert response.status == 200, digest
    listed = referrers(target.request("GET", f"gc/app/referrers/{images.single.digest}"))
    assert [entry["digest"] for entry in listed] == [pushed.signature]
    # gc/shared's manifest is gone, but the blobs it linked are gc/app's too.
    for blob in images.single.layers:
        assert target.request("HEAD", f"gc/shared/blobs/{blob.digest}", follow=True).status == 200


def assert_gone(target: Target, pushed: Pushed, images: ImageSet) -> None:
    for digest in (images.other.manifest.digest, pushed.other_signature):
        assert target.request("GET", f"gc/app/manifests/{digest}").status == 404, digest
    assert referrers(target.request("GET", f"gc/app/referrers/{images.other.digest}")) == []
    for digest in pushed.gone_blobs:
        assert target.request("HEAD", f"gc/app/blobs/{digest}").status == 404, digest


@pytest.fixture(params=STORAGES)
def storage(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def target(storage: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    section: dict[str, Any] = {"delete": {"enabled": True}}
    if storage == "s3":
        s3: S3ServerProcess = request.getfixturevalue("s3_server")
        bucket = f"gc-{time.monotonic_ns()}"
        s3.create_bucket(bucket)
        section.update(s3.storage_parameters(bucket, "/registry"))
        section["redirect"] = {"disable": True}
    elif storage == "inmemory":
        section["inmemory"] = {}
        section["gc"] = {
            "enabled": True,
            "interval": "1s",
            "minage": f"{ONLINE_MIN_AGE}s",
            "deleteuntagged": True,
        }
    else:
        section["filesystem"] = {"rootdirectory": str(tmp_path / "root")}
    target = Target("txregistry", tmp_path / "root", tmp_path / "work", storage=section).start()
    try:
        yield target
    finally:
        target.stop()


def garbage_collect(target: Target, *flags: str) -> str:
    """Run C{txregistry garbage-collect} on the target's config; its output."""
    config = target.process.workdir / f"{target.process.name}-config.yml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "txregistry",
            "garbage-collect",
            "--min-age",
            "0s",
            *flags,
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result.stdout


def wait_until_gone(target: Target, pushed: Pushed, timeout: float = 60.0) -> None:
    """Wait for the registry's own collector to have deleted what it should."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = [
            target.request("HEAD", f"gc/app/blobs/{digest}").status for digest in pushed.gone_blobs
        ]
        if all(status == 404 for status in statuses):
            return
        time.sleep(0.5)
    raise AssertionError(f"not collected within {timeout}s:\n{target.log_since(0)}")


def test_collection_of_pushed_images(
    storage: str, target: Target, clients: Clients, images: ImageSet, tmp_path: Path
) -> None:
    clients.allow(target)
    pushed = populate(target, clients, images)
    if storage == "inmemory":
        wait_until_gone(target, pushed)
    else:
        # Without -m every manifest stays: only the orphan blob goes.
        output = garbage_collect(target)
        assert f"blob eligible for deletion: {pushed.orphan}" in output
        assert target.request("HEAD", f"gc/app/blobs/{pushed.orphan}").status == 404
        response = target.request(
            "GET", f"gc/app/manifests/{images.other.digest}", headers={"Accept": OCI_MANIFEST}
        )
        assert response.status == 200
        output = garbage_collect(target, "--delete-untagged")
        assert f"manifest eligible for deletion: {images.other.digest}" in output
        assert "0 blobs and 0 manifests" not in output.splitlines()[-1]
    assert_gone(target, pushed, images)
    assert_kept(target, clients, images, tmp_path / "pulled", pushed)
    if storage == "filesystem":
        v2 = target.root / "docker" / "registry" / "v2"
        for digest in pushed.gone_blobs:
            hex_part = digest.split(":")[1]
            assert not (v2 / "blobs" / "sha256" / hex_part[:2] / hex_part).exists(), digest
            assert not (v2 / "repositories" / "gc/app" / "_layers" / "sha256" / hex_part).exists()
    assert target.log_problems() == []
