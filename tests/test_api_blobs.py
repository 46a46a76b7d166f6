"""
C{HEAD}, C{GET} and C{DELETE /v2/<name>/blobs/<digest>} over real HTTP
against txregistry processes: whole blobs and byte ranges, conditional
requests, blobs not linked into the repository, bad digests, sha512, and
deletes enabled, disabled and refused in read-only mode.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from support import EMPTY, MISSING, sha256
from support import assert_error as _assert_error


@pytest.fixture
def pushed(registry, repo):
    """A 100-byte blob pushed to C{repo}: (data, digest)."""
    data = os.urandom(100)
    return data, registry.push(repo, data)


# -- whole blobs ---------------------------------------------------------------


def _assert_blob_headers(response, digest, length):
    assert response.header("Content-Length") == str(length)
    assert response.header("Docker-Content-Digest") == digest
    assert response.header("ETag") == f'"{digest}"'
    assert response.header("Accept-Ranges") == "bytes"
    assert response.header("Content-Type") == "application/octet-stream"


def test_get_blob(registry, repo, blob):
    digest = registry.push(repo, blob)
    response = registry.request("GET", f"{repo}/blobs/{digest}")
    assert response.status == 200
    _assert_blob_headers(response, digest, len(blob))
    assert response.header("Content-Range") is None
    assert response.body == blob
    assert sha256(response.body) == digest


def test_head_blob(registry, repo, blob):
    digest = registry.push(repo, blob)
    response = registry.request("HEAD", f"{repo}/blobs/{digest}")
    assert response.status == 200
    _assert_blob_headers(response, digest, len(blob))
    assert response.body == b""


def test_get_blob_of_a_few_mib(registry, repo):
    """Larger than one read step of the download producer."""
    data = os.urandom(3 * 1024 * 1024 + 17)
    digest = registry.push(repo, data)
    response = registry.request("GET", f"{repo}/blobs/{digest}")
    assert response.status == 200
    assert response.header("Content-Length") == str(len(data))
    assert response.body == data


def test_get_blob_stored_file_is_the_content(registry, repo, blob):
    digest = registry.push(repo, blob)
    assert registry.blob_file(digest).read_bytes() == blob
    assert registry.link_file(repo, digest).read_bytes() == digest.encode()


# -- ranges --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=5-", 5, 99),
        ("bytes=-3", 97, 99),
        ("bytes=90-1000", 90, 99),
        ("bytes=0-0", 0, 0),
        ("bytes=99-99", 99, 99),
        ("bytes=-100", 0, 99),
        ("bytes=-1000", 0, 99),
        ("bytes=0-", 0, 99),
        (" bytes=10-19 ", 10, 19),
        ("bytes=-" + "9" * 30, 0, 99),
        # The unit is case-insensitive (RFC 9110 14.1).
        ("BYTES=0-9", 0, 9),
        ("Bytes=-3", 97, 99),
        # More digits than int() reads (each was a 500).
        ("bytes=0-" + "9" * 5000, 0, 99),
        ("bytes=" + "0" * 5000 + "5-", 5, 99),
        ("bytes=-" + "9" * 5000, 0, 99),
    ],
)
def test_get_range(registry, repo, pushed, header, start, end):
    data, digest = pushed
    for method in ("GET", "HEAD"):
        response = registry.request(method, f"{repo}/blobs/{digest}", headers={"Range": header})
        assert response.status == 206, (method, response.body)
        assert response.header("Content-Range") == f"bytes {start}-{end}/100"
        assert response.header("Content-Length") == str(end - start + 1)
        assert response.header("Docker-Content-Digest") == digest
        assert response.header("Accept-Ranges") == "bytes"
        assert response.body == (data[start : end + 1] if method == "GET" else b"")


@pytest.mark.parametrize(
    "header",
    [
        "bytes=100-",
        "bytes=100-200",
        "bytes=1000-",
        "bytes=-0",
        "bytes=50-10",
        "bytes=" + "9" * 30 + "-",
        "bytes=" + "9" * 5000 + "-",
        "BYTES=100-",
    ],
)
def test_unsatisfiable_range(registry, repo, pushed, header):
    _, digest = pushed
    response = registry.request("GET", f"{repo}/blobs/{digest}", headers={"Range": header})
    _assert_error(response, 416, "RANGE_INVALID")
    assert response.header("Content-Range") == "bytes */100"
    head = registry.request("HEAD", f"{repo}/blobs/{digest}", headers={"Range": header})
    assert head.status == 416
    assert head.header("Content-Range") == "bytes */100"


@pytest.mark.parametrize(
    "header",
    ["bytes=abc", "items=0-5", "bytes=0-1,5-6", "bytes=-", "bytes 0-5", "0-5", "", "bytes=1-2-3"],
)
def test_malformed_range_sends_whole_blob(registry, repo, pushed, header):
    data, digest = pushed
    response = registry.request("GET", f"{repo}/blobs/{digest}", headers={"Range": header})
    assert response.status == 200
    assert response.header("Content-Range") is None
    assert response.header("Content-Length") == "100"
    assert response.body == data


@pytest.mark.parametrize("header", ["bytes=\u00e9-", "bytes=0-\u00b2", "\u00ff\u00fe"])
def test_range_header_that_is_not_utf8(registry, repo, pushed, header):
    """Header bytes need not be UTF-8; such a Range is malformed, so ignored."""
    data, digest = pushed
    response = registry.request("GET", f"{repo}/blobs/{digest}", headers={"Range": header})
    assert response.status == 200
    assert response.body == data


def test_if_none_match_that_is_not_utf8(registry, repo, pushed):
    data, digest = pushed
    response = registry.request(
        "GET", f"{repo}/blobs/{digest}", headers={"If-None-Match": '"\u00e9"'}
    )
    assert response.status == 200
    assert response.body == data


def test_range_on_a_larger_blob(registry, repo):
    """A range that starts and ends inside a later read step of the download."""
    data = os.urandom(2 * 1024 * 1024 + 5)
    digest = registry.push(repo, data)
    start, end = 1024 * 1024 - 3, 2 * 1024 * 1024 + 1
    response = registry.request(
        "GET", f"{repo}/blobs/{digest}", headers={"Range": f"bytes={start}-{end}"}
    )
    assert response.status == 206
    assert response.header("Content-Range") == f"bytes {start}-{end}/{len(data)}"
    assert response.body == data[start : end + 1]


# -- conditional requests --------------------------------------------------------


def test_if_none_match(registry, repo, pushed):
    _, digest = pushed
    for value in (f'"{digest}"', digest):
        for method in ("GET", "HEAD"):
            response = registry.request(
                method, f"{repo}/blobs/{digest}", headers={"If-None-Match": value}
            )
            assert response.status == 304, (value, method)
            assert response.body == b""
            assert response.header("ETag") == f'"{digest}"'
            assert response.header("Docker-Content-Digest") == digest


def test_if_none_match_other_etag(registry, repo, pushed):
    data, digest = pushed
    response = registry.request(
        "GET", f"{repo}/blobs/{digest}", headers={"If-None-Match": f'"{MISSING}"'}
    )
    assert response.status == 200
    assert response.body == data


def test_if_none_match_on_a_blob_not_linked(registry, repo, pushed):
    """A conditional request does not reveal a blob the repository lacks."""
    _, digest = pushed
    response = registry.request(
        "GET", f"{repo}-other/blobs/{digest}", headers={"If-None-Match": f'"{digest}"'}
    )
    _assert_error(response, 404, "BLOB_UNKNOWN")


# -- unknown blobs and bad digests -------------------------------------------------


def test_unknown_blob(registry, repo):
    response = registry.request("GET", f"{repo}/blobs/{MISSING}")
    _assert_error(response, 404, "BLOB_UNKNOWN")
    head = registry.request("HEAD", f"{repo}/blobs/{MISSING}")
    assert head.status == 404
    assert head.body == b""


def test_blob_of_another_repository(registry, repo, pushed):
    """Pushed to one repository, the blob is unknown to another."""
    data, digest = pushed
    assert registry.blob_file(digest).read_bytes() == data
    other = f"{repo}-other"
    for method in ("GET", "HEAD"):
        response = registry.request(method, f"{other}/blobs/{digest}")
        assert response.status == 404
        if method == "GET":
            _assert_error(response, 404, "BLOB_UNKNOWN")
    _assert_error(registry.request("DELETE", f"{other}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert registry.request("GET", f"{repo}/blobs/{digest}").body == data


def test_blob_linked_but_data_gone(registry, repo, pushed):
    """A link whose blob data was removed (say by garbage collection) is unknown."""
    _, digest = pushed
    registry.blob_file(digest).unlink()
    _assert_error(registry.request("GET", f"{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert registry.request("HEAD", f"{repo}/blobs/{digest}").status == 404


def test_blob_with_corrupt_link(registry, repo, pushed):
    _, digest = pushed
    registry.link_file(repo, digest).write_bytes(MISSING.encode())
    _assert_error(registry.request("GET", f"{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:xyz",
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "A" * 64,
        "sha256:" + "g" * 64,
        "sha256:",
        "SHA256:" + "a" * 64,
        "md5:" + "a" * 32,
        "sha1:" + "a" * 40,
        "notadigest",
        "sha256",
        ":" + "a" * 64,
        "sha256:" + "a" * 62 + "%00a",
        "sha384:" + "a" * 64,
        "sha512:" + "a" * 64,
    ],
)
def test_invalid_digest(registry, repo, digest):
    for method in ("GET", "HEAD", "DELETE"):
        response = registry.request(method, f"{repo}/blobs/{digest}")
        assert response.status == 400, (method, response.body)
        if method != "HEAD":
            _assert_error(response, 400, "DIGEST_INVALID")


def test_sha512_blob(registry, repo):
    data = os.urandom(5000)
    digest = registry.push(repo, data, algorithm="sha512")
    assert digest.startswith("sha512:")
    assert registry.blob_file(digest).read_bytes() == data
    response = registry.request("GET", f"{repo}/blobs/{digest}")
    assert response.status == 200
    assert response.header("Docker-Content-Digest") == digest
    assert response.body == data
    # The same bytes are a different, unknown, sha256 blob.
    _assert_error(registry.request("GET", f"{repo}/blobs/{sha256(data)}"), 404, "BLOB_UNKNOWN")
    ranged = registry.request("GET", f"{repo}/blobs/{digest}", headers={"Range": "bytes=-10"})
    assert ranged.status == 206
    assert ranged.body == data[-10:]


def test_sha384_blob(registry, repo):
    data = os.urandom(777)
    digest = registry.push(repo, data, algorithm="sha384")
    response = registry.request("GET", f"{repo}/blobs/{digest}")
    assert response.status == 200
    assert response.body == data
    assert hashlib.sha384(response.body).hexdigest() == digest.split(":")[1]


def test_empty_blob(registry, repo):
    digest = registry.push(repo, b"")
    assert digest == EMPTY
    assert registry.blob_file(EMPTY).read_bytes() == b""
    response = registry.request("GET", f"{repo}/blobs/{EMPTY}")
    assert response.status == 200
    assert response.header("Content-Length") == "0"
    assert response.header("Docker-Content-Digest") == EMPTY
    assert response.body == b""
    head = registry.request("HEAD", f"{repo}/blobs/{EMPTY}")
    assert head.status == 200
    assert head.header("Content-Length") == "0"
    ranged = registry.request("GET", f"{repo}/blobs/{EMPTY}", headers={"Range": "bytes=0-"})
    _assert_error(ranged, 416, "RANGE_INVALID")
    assert ranged.header("Content-Range") == "bytes */0"
    # A suffix range is satisfiable even then (RFC 9110 14.1.1), with no byte
    # to send: the whole, empty, blob.
    whole = registry.request("GET", f"{repo}/blobs/{EMPTY}", headers={"Range": "bytes=-10"})
    assert whole.status == 200
    assert whole.header("Content-Range") is None
    assert whole.body == b""


# -- deleting ----------------------------------------------------------------------


def test_delete_blob(registry, repo, pushed):
    data, digest = pushed
    other = f"{repo}-other"
    mounted = registry.request("POST", f"{other}/blobs/uploads/?mount={digest}&from={repo}")
    assert mounted.status == 201
    response = registry.request("DELETE", f"{repo}/blobs/{digest}")
    assert response.status == 202
    assert response.header("Docker-Content-Digest") == digest
    assert response.header("Content-Length") == "0"
    assert not registry.link_file(repo, digest).exists()
    _assert_error(registry.request("GET", f"{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert registry.request("HEAD", f"{repo}/blobs/{digest}").status == 404
    # The other repository links it still; the content stays.
    kept = registry.request("GET", f"{other}/blobs/{digest}")
    assert kept.status == 200
    assert kept.body == data
    assert registry.blob_file(digest).read_bytes() == data
    # Deleting again: it is no longer there.
    _assert_error(registry.request("DELETE", f"{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_delete_then_push_again(registry, repo, pushed):
    data, digest = pushed
    assert registry.request("DELETE", f"{repo}/blobs/{digest}").status == 202
    assert registry.push(repo, data) == digest
    assert registry.request("GET", f"{repo}/blobs/{digest}").body == data


def test_delete_unknown_blob(registry, repo):
    _assert_error(registry.request("DELETE", f"{repo}/blobs/{MISSING}"), 404, "BLOB_UNKNOWN")


def test_delete_disabled(start_registry):
    server = start_registry(delete=False)
    data = os.urandom(300)
    digest = server.push("repo", data)
    response = server.request("DELETE", f"repo/blobs/{digest}")
    _assert_error(response, 405, "UNSUPPORTED")
    _assert_error(server.request("DELETE", f"repo/blobs/{MISSING}"), 405, "UNSUPPORTED")
    assert server.link_file("repo", digest).exists()
    assert server.request("GET", f"repo/blobs/{digest}").body == data
    # Uploads can still be cancelled: that deletes no blob.
    upload = server.start_upload("repo").header("Location")
    assert server.request("DELETE", upload).status == 204


def test_readonly_blobs(registry, repo, pushed, start_registry):
    """A read-only process over the same storage serves blobs and deletes none."""
    data, digest = pushed
    readonly = start_registry(root=registry.root, readonly=True)
    response = readonly.request("GET", f"{repo}/blobs/{digest}")
    assert response.status == 200
    assert response.body == data
    assert readonly.request("HEAD", f"{repo}/blobs/{digest}").status == 200
    ranged = readonly.request("GET", f"{repo}/blobs/{digest}", headers={"Range": "bytes=1-2"})
    assert ranged.status == 206
    assert ranged.body == data[1:3]
    _assert_error(readonly.request("DELETE", f"{repo}/blobs/{digest}"), 405, "UNSUPPORTED")
    assert registry.link_file(repo, digest).exists()
