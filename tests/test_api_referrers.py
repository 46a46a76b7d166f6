"""
C{GET} and C{HEAD /v2/<name>/referrers/<digest>} (OCI 1.1) over real HTTP
against txregistry processes: an image index of the manifests whose
C{subject} is that digest (artifacts and indexes alike), with their
artifact types, annotations, sizes and digests; empty for an unknown
subject or repository; the C{artifactType} filter; deletes; and pushes and
deletes racing each other.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from manifest_support import (
    OCI_INDEX,
    OCI_MANIFEST,
    Images,
    assert_error,
    sha256,
    sha512,
)
from support import MISSING

SBOM = "application/vnd.example.sbom+json"
SIGNATURE = "application/vnd.example.signature"


@pytest.fixture
def images(registry, repo):
    """Pushes to C{repo} of the shared registry."""
    return Images(registry, repo)


@pytest.fixture
def subject(images):
    """An image pushed to C{repo}: its bytes."""
    content = images.image()
    images.push("subject", content)
    return content


def _entry(content, artifact_type=None, digest=None, annotations=None):
    """The referrers-list descriptor of a manifest."""
    document = json.loads(content)
    entry = {
        "mediaType": document.get("mediaType", OCI_MANIFEST),
        "digest": digest or sha256(content),
        "size": len(content),
    }
    if artifact_type is not None:
        entry["artifactType"] = artifact_type
    if annotations:
        entry["annotations"] = annotations
    return entry


def _assert_referrers(response, entries, filtered=False):
    """A 200 OCI index listing C{entries}, in digest order."""
    assert response.status == 200, response.body
    assert response.header("Content-Type") == OCI_INDEX
    assert int(response.header("Content-Length")) == len(response.body)
    assert response.json() == {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": sorted(entries, key=lambda entry: entry["digest"]),
    }
    assert response.header("OCI-Filters-Applied") == ("artifactType" if filtered else None)


def test_unknown_subject(images, subject):
    for digest in (MISSING, sha256(subject), sha512(subject)):
        _assert_referrers(images.referrers(digest), [])
        head = images.referrers(digest, method="HEAD")
        assert head.status == 200
        assert head.body == b""
        assert head.header("Content-Type") == OCI_INDEX


def test_unknown_repository(registry, repo):
    response = registry.request("GET", f"{repo}/never/referrers/{MISSING}")
    _assert_referrers(response, [])


@pytest.mark.parametrize("digest", ["sha256:xyz", "md5:" + "a" * 32, "sha256:" + "A" * 64, "x"])
def test_invalid_digest(images, digest):
    assert_error(images.referrers(digest), 400, "DIGEST_INVALID")


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE"])
def test_wrong_method(images, method):
    response = images.registry.request(method, f"{images.repo}/referrers/{MISSING}")
    assert_error(response, 405, "UNSUPPORTED")
    assert response.header("Allow") == "GET, HEAD"


def test_lists_referrers(images, subject):
    sbom = images.artifact(SBOM, subject=subject, annotations={"org.example.kind": "sbom"})
    # No artifactType: the config's media type is the artifact type.
    signature = images.artifact(None, subject=subject, config_type=SIGNATURE)
    # An index with a subject refers too; one without artifactType has none.
    child = images.image()
    images.push(sha256(child), child)
    subject_descriptor = {
        "mediaType": OCI_MANIFEST,
        "digest": sha256(subject),
        "size": len(subject),
    }
    typed_index = images.index(
        [(child, None)],
        artifactType="application/vnd.example.bundle",
        subject=subject_descriptor,
        annotations={"a": "1", "b": "2"},
    )
    bare_index = images.index([(child, None)], subject=subject_descriptor)
    # Not referrers of the subject: another subject, and none.
    other = images.artifact(SBOM, subject=child)
    unrelated = images.artifact(SBOM)
    for tag, content in [
        ("sbom", sbom),
        ("signature", signature),
        ("typed-index", typed_index),
        ("bare-index", bare_index),
        ("other", other),
        ("unrelated", unrelated),
    ]:
        response = images.put(tag, content)
        assert response.status == 201, response.body
    expected = [
        _entry(sbom, SBOM, annotations={"org.example.kind": "sbom"}),
        _entry(signature, SIGNATURE),
        _entry(typed_index, "application/vnd.example.bundle", annotations={"a": "1", "b": "2"}),
        _entry(bare_index),
    ]
    response = images.referrers(sha256(subject))
    _assert_referrers(response, expected)
    assert {entry["mediaType"] for entry in response.json()["manifests"]} == {
        OCI_MANIFEST,
        OCI_INDEX,
    }
    head = images.referrers(sha256(subject), method="HEAD")
    assert head.status == 200
    assert head.header("Content-Length") == response.header("Content-Length")
    _assert_referrers(images.referrers(sha256(child)), [_entry(other, SBOM)])


def test_subject_need_not_exist(images):
    missing = images.image()
    sbom = images.artifact(SBOM, subject=missing)
    response = images.put(sha256(sbom), sbom)
    assert response.status == 201, response.body
    assert response.header("OCI-Subject") == sha256(missing)
    _assert_referrers(images.referrers(sha256(missing)), [_entry(sbom, SBOM)])


def test_referrers_of_one_repository_only(images, repo, subject):
    sbom = images.artifact(SBOM, subject=subject)
    images.push("sbom", sbom)
    other = Images(images.registry, f"{repo}-other")
    _assert_referrers(other.referrers(sha256(subject)), [])
    theirs = other.artifact(SIGNATURE, subject=subject)
    other.push("signature", theirs)
    _assert_referrers(other.referrers(sha256(subject)), [_entry(theirs, SIGNATURE)])
    _assert_referrers(images.referrers(sha256(subject)), [_entry(sbom, SBOM)])


def test_artifact_type_filter(images, subject):
    sboms = [images.artifact(SBOM, subject=subject) for _ in range(2)]
    signature = images.artifact(None, subject=subject, config_type=SIGNATURE)
    for content in [*sboms, signature]:
        images.push(sha256(content), content)
    digest = sha256(subject)
    by_sbom = images.referrers(digest, f"?artifactType={quote(SBOM, safe='')}")
    _assert_referrers(by_sbom, [_entry(sbom, SBOM) for sbom in sboms], filtered=True)
    by_config = images.referrers(digest, f"?artifactType={quote(SIGNATURE, safe='')}")
    _assert_referrers(by_config, [_entry(signature, SIGNATURE)], filtered=True)
    none = images.referrers(digest, "?artifactType=application%2Fvnd.example.none")
    _assert_referrers(none, [], filtered=True)
    head = images.referrers(digest, f"?artifactType={quote(SBOM, safe='')}", method="HEAD")
    assert head.status == 200
    assert head.header("OCI-Filters-Applied") == "artifactType"
    # An empty filter is no filter.
    everything = images.referrers(digest, "?artifactType=")
    expected = [_entry(sbom, SBOM) for sbom in sboms] + [_entry(signature, SIGNATURE)]
    _assert_referrers(everything, expected)


def test_deleted_referrer_disappears(images, subject):
    kept = images.artifact(SBOM, subject=subject)
    dropped = images.artifact(SBOM, subject=subject)
    images.push("kept", kept)
    images.push("dropped", dropped)
    digest = sha256(subject)
    _assert_referrers(images.referrers(digest), [_entry(kept, SBOM), _entry(dropped, SBOM)])
    # Untagged, it is still a manifest of the repository, so still listed.
    assert images.delete("dropped").status == 202
    _assert_referrers(images.referrers(digest), [_entry(kept, SBOM), _entry(dropped, SBOM)])
    assert images.delete(sha256(dropped)).status == 202
    _assert_referrers(images.referrers(digest), [_entry(kept, SBOM)])
    # Deleting the subject leaves its referrers listed (OCI 1.1 leaves that open).
    assert images.delete(digest).status == 202
    _assert_referrers(images.referrers(digest), [_entry(kept, SBOM)])
    # Pushed again, it is listed again.
    images.push("dropped", dropped)
    _assert_referrers(images.referrers(digest), [_entry(kept, SBOM), _entry(dropped, SBOM)])


def test_sha512_referrer_and_subject(registry, images, repo, subject, start_registry):
    sbom = images.artifact(SBOM, subject=subject)
    referrer = sha512(sbom)
    assert images.put(referrer, sbom).status == 201
    expected = [_entry(sbom, SBOM, digest=referrer)]
    _assert_referrers(images.referrers(sha256(subject)), expected)
    # Read back from storage by a process that never saw the push.
    other = Images(start_registry(root=registry.root), repo)
    _assert_referrers(other.referrers(sha256(subject)), expected)
    # A subject named by a sha512 digest.
    document = json.loads(images.artifact(SBOM))
    document["subject"] = {"mediaType": OCI_MANIFEST, "digest": sha512(subject), "size": 1}
    by_sha512 = json.dumps(document).encode()
    images.push("by-sha512", by_sha512)
    _assert_referrers(images.referrers(sha512(subject)), [_entry(by_sha512, SBOM)])
    _assert_referrers(images.referrers(sha256(subject)), expected)


def test_concurrent_pushes_and_deletes(images):
    """Twenty referrers pushed from threads while some are deleted: the list is the rest."""
    subject = "sha256:" + os.urandom(32).hex()
    subject_bytes = images.image()
    contents = []
    for index in range(20):
        document = json.loads(images.artifact(SBOM, annotations={"index": str(index)}))
        document["subject"] = {
            "mediaType": OCI_MANIFEST,
            "digest": subject,
            "size": len(subject_bytes),
        }
        contents.append(json.dumps(document).encode())
    everything = {sha256(content) for content in contents}
    doomed = set(range(0, 20, 3))
    barrier = threading.Barrier(20)

    def work(index):
        content = contents[index]
        barrier.wait(10)
        response = images.put(f"r{index}", content)
        assert response.status == 201, response.body
        listed = images.referrers(subject)
        assert listed.status == 200, listed.body
        digests = [entry["digest"] for entry in listed.json()["manifests"]]
        # Nothing but referrers, each once, in order; this one among them.
        assert set(digests) <= everything
        assert digests == sorted(set(digests))
        assert sha256(content) in digests
        if index in doomed:
            deleted = images.delete(sha256(content))
            assert deleted.status == 202, deleted.body

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(work, range(20)))
    expected = [
        _entry(content, SBOM, annotations={"index": str(index)})
        for index, content in enumerate(contents)
        if index not in doomed
    ]
    assert len(expected) == 13
    _assert_referrers(images.referrers(subject), expected)


def test_storage_changed_behind_its_back(registry, images, repo, subject, start_registry):
    """
    Read by a process that never saw the pushes: a referrer whose revision
    another process removed (as Distribution's delete does) is not listed,
    nor one whose bytes are gone; the others are, in one answer.
    """
    kept = [images.artifact(SBOM, subject=subject) for _ in range(3)]
    unlinked = images.artifact(SBOM, subject=subject)
    no_bytes = images.artifact(SBOM, subject=subject)
    for number, content in enumerate([*kept, unlinked, no_bytes]):
        images.push(f"r{number}", content)
    storage = registry.root / "docker/registry/v2"
    revision = storage / f"repositories/{repo}/_manifests/revisions/sha256/{sha256(unlinked)[7:]}"
    shutil.rmtree(revision)
    hex_digest = sha256(no_bytes)[7:]
    (storage / f"blobs/sha256/{hex_digest[:2]}/{hex_digest}/data").unlink()
    other = Images(start_registry(root=registry.root), repo)
    _assert_referrers(other.referrers(sha256(subject)), [_entry(content, SBOM) for content in kept])
