"""
Blob uploads over real HTTP against txregistry processes: C{POST} (start,
monolithic, mount), C{PATCH} (chunks with C{Content-Range}, streamed
chunked bodies), C{GET} status, C{PUT} (commit), C{DELETE} (cancel); the
signed C{_state}; Location URLs under each C{http} option; read-only mode;
concurrent pushes; uploads moving between processes; clients that leave
half-way; and a large streamed chunk that the server must not hold in memory.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from support import EMPTY, MISSING, sha256
from support import assert_error as _assert_error
from txregistry.resources.uploads import SMALL_BODY

UUID_PATTERN = "0123456789abcdef-"


def _with(location, **params):
    """C{location} with query parameters added."""
    extra = "&".join(f"{key}={quote(value, safe=':')}" for key, value in params.items())
    return f"{location}{'&' if '?' in location else '?'}{extra}"


def _bare(location):
    """C{location} without its query (no C{_state})."""
    return location.split("?", 1)[0]


def _state(location):
    return parse_qs(urlsplit(location).query)["_state"][0]


def _upload_id(location):
    return urlsplit(location).path.rsplit("/", 1)[1]


def _status_range(registry, location):
    response = registry.request("GET", location)
    assert response.status == 204, response.body
    return response.header("Range")


def _assert_no_upload_left(registry, name):
    assert registry.upload_entries(name) == []


def _blob_data_files(registry, digest):
    hex_part = digest.split(":", 1)[1]
    blobs = registry.v2_root / "blobs"
    return sorted(path for path in blobs.rglob("*") if hex_part in str(path))


# -- starting an upload ------------------------------------------------------------


def test_upload_without_data_is_unknown(registry, repo):
    """
    An upload whose data file is gone (its start time kept) is unknown:
    nothing to continue, and no data file is made up for it.
    """
    location = registry.start_upload(repo).header("Location")
    folder = registry.uploads_dir(repo) / _upload_id(location)
    (folder / "data").unlink()
    for method in ("GET", "PATCH", "PUT"):
        target = location if method != "PUT" else f"{location}&digest={EMPTY}"
        response = registry.request(method, target, b"" if method != "GET" else None)
        _assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    assert not (folder / "data").exists()


def test_start_upload(registry, repo):
    response = registry.request("POST", f"{repo}/blobs/uploads/")
    assert response.status == 202
    upload_id = response.header("Docker-Upload-UUID")
    assert upload_id and set(upload_id) <= set(UUID_PATTERN)
    location = response.header("Location")
    assert location.startswith(f"{registry.url}/v2/{repo}/blobs/uploads/{upload_id}?_state=")
    assert _state(location)
    assert response.header("Range") == "0-0"
    assert response.header("Content-Length") == "0"
    assert response.body == b""
    # Stored as Distribution stores it.
    folder = registry.uploads_dir(repo) / upload_id
    assert (folder / "data").read_bytes() == b""
    assert (folder / "startedat").read_bytes()
    # The status says the same.
    status = registry.request("GET", location)
    assert status.status == 204
    assert status.header("Range") == "0-0"
    assert status.header("Docker-Upload-UUID") == upload_id
    assert _upload_id(status.header("Location")) == upload_id
    head = registry.request("HEAD", location)
    assert head.status == 204
    assert head.header("Range") == "0-0"


def test_start_upload_without_trailing_slash(registry, repo):
    response = registry.request("POST", f"{repo}/blobs/uploads")
    assert response.status == 202
    assert response.header("Docker-Upload-UUID")


def test_each_upload_is_new(registry, repo):
    first = registry.start_upload(repo).header("Docker-Upload-UUID")
    second = registry.start_upload(repo).header("Docker-Upload-UUID")
    assert first != second
    assert registry.upload_entries(repo) == sorted([first, second])


def test_location_follows_forwarded_headers(registry, repo):
    response = registry.request(
        "POST",
        f"{repo}/blobs/uploads/",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "front.example:8443"},
    )
    assert response.status == 202
    assert response.header("Location").startswith(
        f"https://front.example:8443/v2/{repo}/blobs/uploads/"
    )


@pytest.mark.parametrize(
    ("options", "expected_root"),
    [
        ({"relativeurls": True}, "/v2/"),
        ({"host": "https://registry.example.com"}, "https://registry.example.com/v2/"),
        ({"prefix": "/reg/"}, "{url}/reg/v2/"),
        ({"prefix": "/a/b", "relativeurls": True}, "/a/b/v2/"),
        (
            {"prefix": "/reg/", "host": "https://registry.example.com:8443/"},
            "https://registry.example.com:8443/reg/v2/",
        ),
    ],
)
def test_location_urls(start_registry, options, expected_root):
    """Every Location (upload and blob) is built from the http options."""
    server = start_registry(**options)
    root = expected_root.format(url=server.url)
    data = os.urandom(2000)
    digest = sha256(data)
    started = server.start_upload("foo/bar")
    location = started.header("Location")
    upload_id = started.header("Docker-Upload-UUID")
    assert location.startswith(f"{root}foo/bar/blobs/uploads/{upload_id}?_state=")
    patched = server.request("PATCH", location, data)
    assert patched.status == 202
    assert patched.header("Location").startswith(f"{root}foo/bar/blobs/uploads/{upload_id}?")
    status = server.request("GET", patched.header("Location"))
    assert status.header("Location").startswith(f"{root}foo/bar/blobs/uploads/{upload_id}?")
    done = server.request("PUT", _with(patched.header("Location"), digest=digest))
    assert done.status == 201, done.body
    assert done.header("Location") == f"{root}foo/bar/blobs/{digest}"
    assert server.request("GET", done.header("Location")).body == data
    # Monolithic and mounted blobs answer with the same kind of Location.
    other = os.urandom(100)
    posted = server.request("POST", f"foo/bar/blobs/uploads/?digest={sha256(other)}", other)
    assert posted.header("Location") == f"{root}foo/bar/blobs/{sha256(other)}"
    mounted = server.request("POST", f"baz/blobs/uploads/?mount={digest}&from=foo/bar")
    assert mounted.status == 201
    assert mounted.header("Location") == f"{root}baz/blobs/{digest}"


def test_prefix_moves_the_api(start_registry):
    server = start_registry(prefix="/reg/")
    assert server.request("GET", "/reg/v2/").json() == {}
    assert server.request("GET", "/reg/v2").json() == {}
    for path in ("/v2/", "/reg/", "/reg", "/v2/foo/blobs/uploads/"):
        response = server.request("GET", path)
        _assert_error(response, 404, "UNSUPPORTED")
    _assert_error(server.request("POST", "/v2/foo/blobs/uploads/"), 404, "UNSUPPORTED")
    assert not (server.v2_root / "repositories" / "foo").exists()


# -- monolithic uploads --------------------------------------------------------------


def test_monolithic_post(registry, repo, blob):
    digest = sha256(blob)
    response = registry.request("POST", f"{repo}/blobs/uploads/?digest={digest}", blob)
    assert response.status == 201, response.body
    assert response.header("Location") == f"{registry.url}/v2/{repo}/blobs/{digest}"
    assert response.header("Docker-Content-Digest") == digest
    assert response.header("Content-Length") == "0"
    assert registry.blob_file(digest).read_bytes() == blob
    assert registry.link_file(repo, digest).read_bytes() == digest.encode()
    _assert_no_upload_left(registry, repo)
    assert registry.request("GET", f"{repo}/blobs/{digest}").body == blob


def test_monolithic_post_streamed(registry, repo):
    chunks = [os.urandom(70_000) for _ in range(5)]
    data = b"".join(chunks)
    response = registry.request(
        "POST", f"{repo}/blobs/uploads/?digest={sha256(data)}", iter(chunks)
    )
    assert response.status == 201, response.body
    assert registry.request("GET", f"{repo}/blobs/{sha256(data)}").body == data
    _assert_no_upload_left(registry, repo)


def test_monolithic_post_sha512(registry, repo, blob):
    digest = "sha512:" + hashlib.sha512(blob).hexdigest()
    response = registry.request("POST", f"{repo}/blobs/uploads/?digest={digest}", blob)
    assert response.status == 201, response.body
    assert response.header("Docker-Content-Digest") == digest
    assert registry.blob_file(digest).read_bytes() == blob
    assert not registry.blob_file(sha256(blob)).exists()


def test_monolithic_post_wrong_digest(registry, repo, blob):
    """Nothing is stored: no blob under either digest, no link, no upload."""
    wrong = sha256(blob + b"x")
    response = registry.request("POST", f"{repo}/blobs/uploads/?digest={wrong}", blob)
    _assert_error(response, 400, "DIGEST_INVALID")
    assert _blob_data_files(registry, wrong) == []
    assert _blob_data_files(registry, sha256(blob)) == []
    assert not registry.link_file(repo, wrong).exists()
    _assert_no_upload_left(registry, repo)
    _assert_error(registry.request("GET", f"{repo}/blobs/{wrong}"), 404, "BLOB_UNKNOWN")


def test_monolithic_post_wrong_digest_streamed(registry, repo):
    chunks = [os.urandom(100_000) for _ in range(3)]
    response = registry.request("POST", f"{repo}/blobs/uploads/?digest={MISSING}", iter(chunks))
    _assert_error(response, 400, "DIGEST_INVALID")
    assert _blob_data_files(registry, sha256(b"".join(chunks))) == []
    _assert_no_upload_left(registry, repo)


@pytest.mark.parametrize(
    "digest",
    ["", "md5:" + "a" * 32, "sha256:abc", "sha256:" + "A" * 64, "garbage", "sha256:%00"],
)
def test_monolithic_post_invalid_digest(registry, repo, digest):
    data = os.urandom(5000)
    response = registry.request("POST", f"{repo}/blobs/uploads/?digest={digest}", data)
    _assert_error(response, 400, "DIGEST_INVALID")
    assert _blob_data_files(registry, sha256(data)) == []
    _assert_no_upload_left(registry, repo)


def test_monolithic_post_empty_body(registry, repo):
    response = registry.request("POST", f"{repo}/blobs/uploads/?digest={EMPTY}", b"")
    assert response.status == 201, response.body
    assert response.header("Docker-Content-Digest") == EMPTY
    assert registry.blob_file(EMPTY).read_bytes() == b""
    _assert_no_upload_left(registry, repo)
    wrong = registry.request("POST", f"{repo}/blobs/uploads/?digest={MISSING}", b"")
    _assert_error(wrong, 400, "DIGEST_INVALID")
    _assert_no_upload_left(registry, repo)


# -- mounting --------------------------------------------------------------------------


def test_mount(registry, repo, blob):
    digest = registry.push(repo, blob)
    target = f"{repo}-mounted"
    response = registry.request("POST", f"{target}/blobs/uploads/?mount={digest}&from={repo}")
    assert response.status == 201, response.body
    assert response.header("Location") == f"{registry.url}/v2/{target}/blobs/{digest}"
    assert response.header("Docker-Content-Digest") == digest
    assert response.header("Docker-Upload-UUID") is None
    assert registry.link_file(target, digest).exists()
    _assert_no_upload_left(registry, target)
    assert registry.request("GET", f"{target}/blobs/{digest}").body == blob
    assert _blob_data_files(registry, digest) == [
        registry.blob_file(digest).parent,
        registry.blob_file(digest),
    ]


def test_mount_from_the_same_repository(registry, repo, blob):
    digest = registry.push(repo, blob)
    response = registry.request("POST", f"{repo}/blobs/uploads/?mount={digest}&from={repo}")
    assert response.status == 201


def test_mount_from_a_repository_without_the_blob(registry, repo, blob):
    """The blob exists, but not in C{from}: an ordinary upload starts."""
    digest = registry.push(f"{repo}-owner", blob)
    response = registry.request(
        "POST", f"{repo}/blobs/uploads/?mount={digest}&from={repo}-stranger"
    )
    assert response.status == 202, response.body
    upload_id = response.header("Docker-Upload-UUID")
    assert response.header("Range") == "0-0"
    assert registry.upload_entries(repo) == [upload_id]
    assert not registry.link_file(repo, digest).exists()
    _assert_error(registry.request("GET", f"{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    # The upload it started works.
    done = registry.request("PUT", _with(response.header("Location"), digest=digest), blob)
    assert done.status == 201
    assert registry.request("GET", f"{repo}/blobs/{digest}").body == blob


def test_mount_of_an_unknown_blob(registry, repo):
    response = registry.request("POST", f"{repo}/blobs/uploads/?mount={MISSING}&from=library/x")
    assert response.status == 202
    assert response.header("Docker-Upload-UUID")


def test_mount_without_from_starts_an_upload(registry, repo, blob):
    digest = registry.push(f"{repo}-owner", blob)
    response = registry.request("POST", f"{repo}/blobs/uploads/?mount={digest}")
    assert response.status == 202
    assert not registry.link_file(repo, digest).exists()


@pytest.mark.parametrize("source", ["Foo", "a//b", "localhost:5000/foo", "a" * 256, "%00", "-"])
def test_mount_invalid_from(registry, repo, blob, source):
    digest = registry.push(f"{repo}-owner", blob)
    response = registry.request("POST", f"{repo}/blobs/uploads/?mount={digest}&from={source}")
    _assert_error(response, 400, "NAME_INVALID")
    _assert_no_upload_left(registry, repo)


@pytest.mark.parametrize("digest", ["sha256:abc", "md5:" + "a" * 32, "nope", "sha256:" + "G" * 64])
def test_mount_invalid_digest(registry, repo, digest):
    response = registry.request("POST", f"{repo}/blobs/uploads/?mount={digest}&from={repo}-x")
    _assert_error(response, 400, "DIGEST_INVALID")
    _assert_no_upload_left(registry, repo)


# -- chunks ----------------------------------------------------------------------------


def test_chunks_in_order(registry, repo):
    data = os.urandom(30_000)
    location = registry.start_upload(repo).header("Location")
    upload_id = _upload_id(location)
    for start, end, form in [
        (0, 9_999, "{start}-{end}"),
        (10_000, 19_999, "bytes {start}-{end}/*"),
        (20_000, 29_999, "bytes={start}-{end}"),
    ]:
        response = registry.request(
            "PATCH",
            location,
            data[start : end + 1],
            headers={
                "Content-Range": form.format(start=start, end=end),
                "Content-Type": "application/octet-stream",
            },
        )
        assert response.status == 202, response.body
        assert response.header("Range") == f"0-{end}"
        assert response.header("Docker-Upload-UUID") == upload_id
        assert response.header("Content-Length") == "0"
        assert _upload_id(response.header("Location")) == upload_id
        assert _state(response.header("Location")) != _state(location)
        location = response.header("Location")
        assert (registry.uploads_dir(repo) / upload_id / "data").stat().st_size == end + 1
    assert _status_range(registry, location) == "0-29999"
    done = registry.request("PUT", _with(location, digest=sha256(data)))
    assert done.status == 201, done.body
    assert done.header("Docker-Content-Digest") == sha256(data)
    assert registry.request("GET", f"{repo}/blobs/{sha256(data)}").body == data
    _assert_no_upload_left(registry, repo)


def test_chunks_without_content_range(registry, repo):
    data = os.urandom(9000)
    location = registry.start_upload(repo).header("Location")
    for offset in range(0, len(data), 3000):
        response = registry.request("PATCH", location, data[offset : offset + 3000])
        assert response.status == 202
        assert response.header("Range") == f"0-{offset + 2999}"
        location = response.header("Location")
    assert registry.request("PUT", _with(location, digest=sha256(data))).status == 201
    assert registry.request("GET", f"{repo}/blobs/{sha256(data)}").body == data


def test_chunk_with_an_empty_body(registry, repo):
    location = registry.start_upload(repo).header("Location")
    response = registry.request("PATCH", location, b"abc")
    location = response.header("Location")
    response = registry.request("PATCH", location, b"")
    assert response.status == 202
    assert response.header("Range") == "0-2"


@pytest.mark.parametrize("chunk_range", ["20-29", "0-9", "5-14", "11-20", "9-18"])
def test_chunk_out_of_order(registry, repo, chunk_range):
    """Refused with the upload's headers, so that the client can resume."""
    data = os.urandom(20)
    location = registry.start_upload(repo).header("Location")
    first = registry.request("PATCH", location, data[:10], headers={"Content-Range": "0-9"})
    assert first.status == 202
    location = first.header("Location")
    response = registry.request(
        "PATCH", location, os.urandom(10), headers={"Content-Range": chunk_range}
    )
    _assert_error(response, 416, "RANGE_INVALID")
    assert response.header("Range") == "0-9"
    assert _upload_id(response.header("Location")) == _upload_id(location)
    assert response.header("Docker-Upload-UUID") == _upload_id(location)
    # Nothing was appended, and the upload resumes where it was.
    assert _status_range(registry, location) == "0-9"
    resumed = registry.request(
        "PATCH", response.header("Location"), data[10:], headers={"Content-Range": "10-19"}
    )
    assert resumed.status == 202
    done = registry.request("PUT", _with(resumed.header("Location"), digest=sha256(data)))
    assert done.status == 201
    assert registry.request("GET", f"{repo}/blobs/{sha256(data)}").body == data


def test_first_chunk_must_start_at_zero(registry, repo):
    location = registry.start_upload(repo).header("Location")
    response = registry.request("PATCH", location, b"x" * 10, headers={"Content-Range": "1-10"})
    _assert_error(response, 416, "RANGE_INVALID")
    assert response.header("Range") == "0-0"


def test_chunk_length_does_not_match_content_range(registry, repo):
    location = registry.start_upload(repo).header("Location")
    response = registry.request("PATCH", location, b"x" * 5, headers={"Content-Range": "0-9"})
    _assert_error(response, 400, "SIZE_INVALID")
    assert _status_range(registry, location) == "0-0"
    response = registry.request("PATCH", location, b"x" * 11, headers={"Content-Range": "0-9"})
    _assert_error(response, 400, "SIZE_INVALID")
    assert (registry.uploads_dir(repo) / _upload_id(location) / "data").read_bytes() == b""


@pytest.mark.parametrize(
    "header",
    ["bytes=abc", "abc", "10-", "-5", "0-", "5-3", "bytes 0-9/10/11", "0 - 9", "0x0-0x9"],
)
def test_malformed_content_range(registry, repo, header):
    location = registry.start_upload(repo).header("Location")
    response = registry.request("PATCH", location, b"x" * 10, headers={"Content-Range": header})
    _assert_error(response, 416, "RANGE_INVALID")
    assert response.header("Range") == "0-0"
    assert response.header("Location")
    assert _status_range(registry, location) == "0-0"


def test_streamed_chunk(registry, repo):
    """A chunked request body of unknown length, no Content-Range."""
    chunks = [os.urandom(64 * 1024 + index) for index in range(20)]
    data = b"".join(chunks)
    location = registry.start_upload(repo).header("Location")
    response = registry.request("PATCH", location, iter(chunks))
    assert response.status == 202, response.body
    assert response.header("Range") == f"0-{len(data) - 1}"
    more = [os.urandom(1000), os.urandom(1)]
    response = registry.request("PATCH", response.header("Location"), iter(more))
    assert response.status == 202
    data += b"".join(more)
    assert response.header("Range") == f"0-{len(data) - 1}"
    done = registry.request("PUT", _with(response.header("Location"), digest=sha256(data)))
    assert done.status == 201
    assert registry.request("GET", f"{repo}/blobs/{sha256(data)}").body == data


def test_patch_on_a_bare_url(registry, repo):
    """A Location without C{_state} is accepted: the state is in storage."""
    data = os.urandom(500)
    location = _bare(registry.start_upload(repo).header("Location"))
    response = registry.request("PATCH", location, data[:200])
    assert response.status == 202
    response = registry.request("PATCH", location, data[200:], headers={"Content-Range": "200-499"})
    assert response.status == 202
    assert _status_range(registry, location) == "0-499"
    assert registry.request("PUT", _with(location, digest=sha256(data))).status == 201


# -- completing --------------------------------------------------------------------------


def test_put_without_body(registry, repo, blob):
    digest = sha256(blob)
    started = registry.start_upload(repo)
    upload_id = started.header("Docker-Upload-UUID")
    patched = registry.request("PATCH", started.header("Location"), blob)
    response = registry.request("PUT", _with(patched.header("Location"), digest=digest))
    assert response.status == 201, response.body
    assert response.header("Location") == f"{registry.url}/v2/{repo}/blobs/{digest}"
    assert response.header("Docker-Content-Digest") == digest
    assert response.header("Content-Length") == "0"
    assert registry.blob_file(digest).read_bytes() == blob
    assert registry.link_file(repo, digest).exists()
    assert not (registry.uploads_dir(repo) / upload_id).exists()
    # The upload is over.
    _assert_error(registry.request("GET", patched.header("Location")), 404, "BLOB_UPLOAD_UNKNOWN")
    again = registry.request("PUT", _with(patched.header("Location"), digest=digest))
    _assert_error(again, 404, "BLOB_UPLOAD_UNKNOWN")


def test_put_with_last_chunk(registry, repo, blob):
    digest = sha256(blob)
    location = registry.start_upload(repo).header("Location")
    patched = registry.request("PATCH", location, blob[:50_000])
    response = registry.request(
        "PUT",
        _with(patched.header("Location"), digest=digest),
        blob[50_000:],
        headers={"Content-Range": f"50000-{len(blob) - 1}"},
    )
    assert response.status == 201, response.body
    assert registry.request("GET", f"{repo}/blobs/{digest}").body == blob
    _assert_no_upload_left(registry, repo)


def test_put_with_whole_blob(registry, repo, blob):
    location = registry.start_upload(repo).header("Location")
    response = registry.request("PUT", _with(location, digest=sha256(blob)), blob)
    assert response.status == 201, response.body
    assert registry.request("GET", f"{repo}/blobs/{sha256(blob)}").body == blob


def test_put_with_streamed_last_chunk(registry, repo):
    chunks = [os.urandom(33_333) for _ in range(4)]
    data = b"".join(chunks)
    location = registry.start_upload(repo).header("Location")
    patched = registry.request("PATCH", location, chunks[0])
    response = registry.request(
        "PUT", _with(patched.header("Location"), digest=sha256(data)), iter(chunks[1:])
    )
    assert response.status == 201, response.body
    assert registry.request("GET", f"{repo}/blobs/{sha256(data)}").body == data


def test_put_with_sha512(registry, repo, blob):
    """Hashed as sha256 on the way in, verified as sha512 at the end."""
    digest = "sha512:" + hashlib.sha512(blob).hexdigest()
    location = registry.start_upload(repo).header("Location")
    patched = registry.request("PATCH", location, blob[:1000])
    response = registry.request(
        "PUT", _with(patched.header("Location"), digest=digest), blob[1000:]
    )
    assert response.status == 201, response.body
    assert response.header("Docker-Content-Digest") == digest
    fetched = registry.request("GET", f"{repo}/blobs/{digest}")
    assert fetched.header("Docker-Content-Digest") == digest
    assert fetched.body == blob


@pytest.mark.parametrize("body", [None, b"more bytes"])
def test_put_without_digest(registry, repo, body):
    """Refused, and the upload stays as it was."""
    location = registry.start_upload(repo).header("Location")
    location = registry.request("PATCH", location, b"0123456789").header("Location")
    for target in (location, _with(location, digest="")):
        response = registry.request("PUT", target, body)
        _assert_error(response, 400, "DIGEST_INVALID")
        assert _status_range(registry, location) == "0-9"
    done = registry.request("PUT", _with(location, digest=sha256(b"0123456789")))
    assert done.status == 201


@pytest.mark.parametrize("digest", ["md5:" + "a" * 32, "sha256:abc", "sha256:" + "A" * 64])
def test_put_with_invalid_digest(registry, repo, digest):
    location = registry.start_upload(repo).header("Location")
    location = registry.request("PATCH", location, b"abc").header("Location")
    response = registry.request("PUT", _with(location, digest=digest), b"def")
    _assert_error(response, 400, "DIGEST_INVALID")
    assert _status_range(registry, location) == "0-2"


@pytest.mark.parametrize("body", [None, b"tail"])
def test_put_with_wrong_digest(registry, repo, blob, body):
    """Refused, and the upload is gone with its bytes."""
    started = registry.start_upload(repo)
    upload_id = started.header("Docker-Upload-UUID")
    location = registry.request("PATCH", started.header("Location"), blob).header("Location")
    response = registry.request("PUT", _with(location, digest=MISSING), body)
    _assert_error(response, 400, "DIGEST_INVALID")
    _assert_error(registry.request("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert not (registry.uploads_dir(repo) / upload_id).exists()
    assert _blob_data_files(registry, MISSING) == []
    assert _blob_data_files(registry, sha256(blob)) == []
    assert _blob_data_files(registry, sha256(blob + (body or b""))) == []
    assert not registry.link_file(repo, MISSING).exists()


def test_put_of_a_blob_already_stored(registry, repo, blob):
    digest = registry.push(f"{repo}-first", blob)
    location = registry.start_upload(repo).header("Location")
    response = registry.request("PUT", _with(location, digest=digest), blob)
    assert response.status == 201
    assert registry.blob_file(digest).read_bytes() == blob
    assert registry.link_file(repo, digest).exists()
    _assert_no_upload_left(registry, repo)


def test_empty_blob_through_an_upload(registry, repo):
    location = registry.start_upload(repo).header("Location")
    response = registry.request("PUT", _with(location, digest=EMPTY))
    assert response.status == 201, response.body
    assert response.header("Docker-Content-Digest") == EMPTY
    fetched = registry.request("GET", f"{repo}/blobs/{EMPTY}")
    assert fetched.status == 200
    assert fetched.header("Content-Length") == "0"
    assert fetched.body == b""
    _assert_no_upload_left(registry, repo)
    # With an empty chunk first, and with the sha512 of nothing.
    location = registry.start_upload(repo).header("Location")
    location = registry.request("PATCH", location, b"").header("Location")
    empty512 = "sha512:" + hashlib.sha512(b"").hexdigest()
    assert registry.request("PUT", _with(location, digest=empty512)).status == 201
    assert registry.request("GET", f"{repo}/blobs/{empty512}").body == b""


# -- small bodies, held in memory and stored in one batch of writes ----------------------

# Sizes about SMALL_BODY: held whole up to it, streamed past it.  Random
# bytes, at least 16 of them: the tests share one storage, and a blob that
# another test stored (a single byte has 256 values) would be there already.
SMALL_SIZES = [16, 4096, SMALL_BODY, SMALL_BODY + 1]


@pytest.mark.parametrize("size", SMALL_SIZES)
def test_put_of_a_small_blob(registry, repo, size):
    """POST, then PUT with the whole blob: stored, linked, the upload gone."""
    data = os.urandom(size)
    digest = sha256(data)
    location = registry.start_upload(repo).header("Location")
    response = registry.request("PUT", _with(location, digest=digest), data)
    assert response.status == 201, response.body
    assert response.header("Location") == f"{registry.url}/v2/{repo}/blobs/{digest}"
    assert response.header("Docker-Content-Digest") == digest
    assert registry.blob_file(digest).read_bytes() == data
    assert registry.link_file(repo, digest).read_bytes() == digest.encode()
    _assert_no_upload_left(registry, repo)
    _assert_error(registry.request("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize("size", SMALL_SIZES)
def test_put_of_a_small_blob_with_the_wrong_digest(registry, repo, size):
    """Refused; the upload is cancelled and nothing is stored."""
    data = os.urandom(size)
    started = registry.start_upload(repo)
    location = started.header("Location")
    response = registry.request("PUT", _with(location, digest=MISSING), data)
    _assert_error(response, 400, "DIGEST_INVALID")
    _assert_error(registry.request("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert _blob_data_files(registry, sha256(data)) == []
    assert _blob_data_files(registry, MISSING) == []
    assert not registry.link_file(repo, MISSING).exists()
    _assert_no_upload_left(registry, repo)


@pytest.mark.parametrize("size", SMALL_SIZES)
def test_monolithic_post_of_a_small_blob(registry, repo, size):
    """Stored and linked, with no upload made on the way; a wrong digest stores nothing."""
    data = os.urandom(size)
    wrong = registry.request("POST", f"{repo}/blobs/uploads/?digest={MISSING}", data)
    _assert_error(wrong, 400, "DIGEST_INVALID")
    assert _blob_data_files(registry, sha256(data)) == []
    assert not registry.link_file(repo, MISSING).exists()
    digest = sha256(data)
    response = registry.request("POST", f"{repo}/blobs/uploads/?digest={digest}", data)
    assert response.status == 201, response.body
    assert registry.blob_file(digest).read_bytes() == data
    assert registry.link_file(repo, digest).read_bytes() == digest.encode()
    _assert_no_upload_left(registry, repo)
    # Again, to a second repository: the stored blob is linked there too.
    again = registry.request("POST", f"{repo}-2/blobs/uploads/?digest={digest}", data)
    assert again.status == 201, again.body
    assert registry.request("GET", f"{repo}-2/blobs/{digest}").body == data


def test_small_put_after_chunks(registry, repo):
    """A small last chunk after others is appended, then the whole is verified."""
    data = os.urandom(10_000)
    location = registry.start_upload(repo).header("Location")
    patched = registry.request("PATCH", location, data[:6000]).header("Location")
    response = registry.request(
        "PUT",
        _with(patched, digest=sha256(data)),
        data[6000:],
        headers={"Content-Range": f"6000-{len(data) - 1}"},
    )
    assert response.status == 201, response.body
    assert registry.request("GET", f"{repo}/blobs/{sha256(data)}").body == data
    _assert_no_upload_left(registry, repo)


def test_small_put_with_a_wrong_content_range(registry, repo):
    """A small last chunk that does not start at the upload's end: 416, the upload kept."""
    data = os.urandom(3)
    location = registry.start_upload(repo).header("Location")
    response = registry.request(
        "PUT", _with(location, digest=sha256(data)), data, headers={"Content-Range": "5-7"}
    )
    _assert_error(response, 416, "RANGE_INVALID")
    assert response.header("Range") == "0-0"
    assert registry.request("PUT", _with(location, digest=sha256(data)), data).status == 201


def test_small_put_to_an_unknown_upload(registry, repo):
    """A small PUT to an upload that does not exist stores nothing."""
    data = os.urandom(100)
    location = registry.start_upload(repo).header("Location")
    assert registry.request("DELETE", location).status == 204
    response = registry.request("PUT", _with(location, digest=sha256(data)), data)
    _assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    assert _blob_data_files(registry, sha256(data)) == []
    assert not registry.link_file(repo, sha256(data)).exists()


# -- cancelling --------------------------------------------------------------------------


def test_cancel_upload(registry, repo):
    started = registry.start_upload(repo)
    upload_id = started.header("Docker-Upload-UUID")
    location = registry.request("PATCH", started.header("Location"), b"abc").header("Location")
    response = registry.request("DELETE", location)
    assert response.status == 204
    assert response.body == b""
    assert not (registry.uploads_dir(repo) / upload_id).exists()
    _assert_error(registry.request("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert registry.request("HEAD", location).status == 404
    _assert_error(registry.request("DELETE", location), 404, "BLOB_UPLOAD_UNKNOWN")
    _assert_error(registry.request("PATCH", location, b"x"), 404, "BLOB_UPLOAD_UNKNOWN")
    put = registry.request("PUT", _with(location, digest=sha256(b"abc")))
    _assert_error(put, 404, "BLOB_UPLOAD_UNKNOWN")
    assert _blob_data_files(registry, sha256(b"abc")) == []


# -- unknown uploads and upload state ------------------------------------------------------


UNKNOWN_UPLOAD_REQUESTS = [
    ("GET", None, {}),
    ("HEAD", None, {}),
    ("PATCH", None, {}),
    ("PATCH", b"some bytes", {}),
    ("PATCH", b"some bytes", {"Content-Range": "0-9"}),
    ("PUT", None, {"digest": EMPTY}),
    ("PUT", b"some bytes", {"digest": sha256(b"some bytes")}),
    ("DELETE", None, {}),
]


@pytest.mark.parametrize(("method", "body", "params"), UNKNOWN_UPLOAD_REQUESTS)
@pytest.mark.parametrize(
    "upload_id",
    ["3f1c6e4e-0000-4000-8000-000000000000", "x", "x.y", "a..b", "_", "-", "x" * 1000],
)
def test_unknown_upload(registry, repo, method, body, params, upload_id):
    params = dict(params)
    headers = {"Content-Range": params.pop("Content-Range")} if "Content-Range" in params else {}
    target = f"{repo}/blobs/uploads/{upload_id}"
    if params:
        target = _with(target, **params)
    response = registry.request(method, target, body, headers=headers)
    assert response.status == 404, response.body
    if method != "HEAD":
        _assert_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    assert not registry.uploads_dir(repo).exists()
    assert not (registry.v2_root / "repositories" / repo).exists()


def test_upload_of_another_repository(registry, repo):
    """An upload id is only known in its own repository."""
    location = registry.start_upload(repo).header("Location")
    upload_id = _upload_id(location)
    elsewhere = f"{repo}-other/blobs/uploads/{upload_id}"
    for method in ("GET", "PATCH", "DELETE"):
        _assert_error(registry.request(method, elsewhere), 404, "BLOB_UPLOAD_UNKNOWN")
    # With the original _state, the name does not match the state.
    query = urlsplit(location).query
    response = registry.request("GET", f"{elsewhere}?{query}")
    _assert_error(response, 404, "BLOB_UPLOAD_INVALID")
    assert _status_range(registry, location) == "0-0"


def _tamper(token):
    middle = len(token) // 2
    flipped = "B" if token[middle] != "B" else "C"
    return token[:middle] + flipped + token[middle + 1 :]


def test_tampered_state(registry, repo):
    location = registry.start_upload(repo).header("Location")
    location = registry.request("PATCH", location, b"abc").header("Location")
    state = _state(location)
    tampered = f"{_bare(location)}?_state={quote(_tamper(state), safe='')}"
    for method, body, params in [
        ("GET", None, {}),
        ("PATCH", None, {}),
        ("PATCH", b"def", {}),
        ("PUT", None, {"digest": sha256(b"abc")}),
        ("PUT", b"def", {"digest": sha256(b"abcdef")}),
        ("DELETE", None, {}),
    ]:
        response = registry.request(method, _with(tampered, **params) if params else tampered, body)
        _assert_error(response, 404, "BLOB_UPLOAD_INVALID")
    assert registry.request("HEAD", tampered).status == 404
    # The upload itself is untouched.
    assert _status_range(registry, location) == "0-2"
    assert registry.request("PUT", _with(location, digest=sha256(b"abc"))).status == 201


@pytest.mark.parametrize(
    "state", ["", "x", "!!!", "%00", "AAAA", "A" * 5000, "eyJOYW1lIjoieCJ9", "====", "%ff%fe"]
)
def test_garbage_state(registry, repo, state):
    location = registry.start_upload(repo).header("Location")
    target = f"{_bare(location)}?_state={state}"
    for method in ("GET", "PATCH", "DELETE"):
        _assert_error(registry.request(method, target), 404, "BLOB_UPLOAD_INVALID")
    assert _status_range(registry, location) == "0-0"


def test_state_of_another_upload(registry, repo):
    first = registry.start_upload(repo).header("Location")
    second = registry.start_upload(repo).header("Location")
    crossed = f"{_bare(first)}?{urlsplit(second).query}"
    for method, body in [("GET", None), ("PATCH", b"abc"), ("DELETE", None)]:
        _assert_error(registry.request(method, crossed, body), 404, "BLOB_UPLOAD_INVALID")
    put = registry.request("PUT", _with(crossed, digest=EMPTY))
    _assert_error(put, 404, "BLOB_UPLOAD_INVALID")
    assert _status_range(registry, first) == "0-0"
    assert _status_range(registry, second) == "0-0"


def test_state_signed_with_another_secret(registry, repo, start_registry):
    """A process sharing the storage but not the secret refuses the state, not the upload."""
    stranger = start_registry(root=registry.root, secret="another-secret")
    location = registry.start_upload(repo).header("Location")
    response = stranger.request("GET", location)
    _assert_error(response, 404, "BLOB_UPLOAD_INVALID")
    assert _status_range(stranger, _bare(location)) == "0-0"


def test_stale_state_on_patch(registry, repo):
    """A Location from before the last chunk: 416 with the current state."""
    stale = registry.start_upload(repo).header("Location")
    current = registry.request("PATCH", stale, b"0123456789").header("Location")
    response = registry.request("PATCH", stale, b"abc")
    _assert_error(response, 416, "RANGE_INVALID")
    assert response.header("Range") == "0-9"
    fresh = response.header("Location")
    assert _state(fresh) == _state(current)
    assert _status_range(registry, stale) == "0-9"
    # A stale PUT is refused the same way.
    put = registry.request("PUT", _with(stale, digest=sha256(b"0123456789abc")), b"abc")
    _assert_error(put, 416, "RANGE_INVALID")
    assert _status_range(registry, current) == "0-9"
    # The fresh Location carries on.
    response = registry.request("PATCH", fresh, b"abc")
    assert response.status == 202
    assert response.header("Range") == "0-12"
    done = registry.request(
        "PUT", _with(response.header("Location"), digest=sha256(b"0123456789abc"))
    )
    assert done.status == 201


# -- read-only mode ------------------------------------------------------------------------


def test_readonly_uploads(registry, repo, blob, start_registry):
    readonly = start_registry(root=registry.root, readonly=True)
    digest = registry.push(repo, blob)
    location = registry.start_upload(repo).header("Location")
    location = registry.request("PATCH", location, b"abc").header("Location")
    entries = registry.upload_entries(repo)
    refused = [
        ("POST", f"{repo}/blobs/uploads/", None),
        ("POST", f"{repo}/blobs/uploads/?digest={sha256(b'x')}", b"x"),
        ("POST", f"{repo}/blobs/uploads/?digest={EMPTY}", None),
        ("POST", f"{repo}-2/blobs/uploads/?mount={digest}&from={repo}", None),
        ("PATCH", location, b"def"),
        ("PATCH", location, None),
        ("PUT", _with(location, digest=sha256(b"abc")), None),
        ("PUT", _with(location, digest=sha256(b"abcdef")), b"def"),
        ("DELETE", location, None),
        ("DELETE", f"{repo}/blobs/{digest}", None),
    ]
    for method, target, body in refused:
        response = readonly.request(method, target, body)
        _assert_error(response, 405, "UNSUPPORTED")
    # Nothing changed; reading still works.
    assert registry.upload_entries(repo) == entries
    assert not registry.link_file(f"{repo}-2", digest).exists()
    assert not registry.blob_file(sha256(b"x")).exists()
    assert _status_range(readonly, location) == "0-2"
    assert readonly.request("HEAD", location).status == 204
    assert readonly.request("GET", f"{repo}/blobs/{digest}").body == blob
    assert readonly.request("GET", "").json() == {}
    # And the writable process finishes the upload.
    assert registry.request("PUT", _with(location, digest=sha256(b"abc"))).status == 201


# -- concurrency and several processes -------------------------------------------------------


@pytest.mark.parametrize("same_repository", [True, False])
def test_concurrent_pushes_of_the_same_blob(registry, repo, same_repository):
    data = os.urandom(512 * 1024)
    digest = sha256(data)
    clients = 4
    names = [repo if same_repository else f"{repo}-{index}" for index in range(clients)]
    barrier = threading.Barrier(clients)

    def push(name):
        location = registry.start_upload(name).header("Location")
        location = registry.request("PATCH", location, data[:300_000]).header("Location")
        barrier.wait(10)
        return registry.request("PUT", _with(location, digest=digest), data[300_000:])

    with ThreadPoolExecutor(clients) as pool:
        responses = list(pool.map(push, names))
    assert [response.status for response in responses] == [201] * clients
    assert {response.header("Docker-Content-Digest") for response in responses} == {digest}
    assert _blob_data_files(registry, digest) == [
        registry.blob_file(digest).parent,
        registry.blob_file(digest),
    ]
    assert registry.blob_file(digest).read_bytes() == data
    for name in set(names):
        assert registry.request("GET", f"{name}/blobs/{digest}").body == data
        _assert_no_upload_left(registry, name)


def test_concurrent_chunks_for_one_upload(registry, repo):
    """
    Two clients PATCH the same upload at the same offset at once.  Whatever
    lands, a blob is only ever committed with the bytes its digest names:
    the chunks end up whole, one after the other, and a PUT for one chunk's
    digest succeeds only if that chunk alone is what the upload holds.
    """
    size = 256 * 1024
    for _ in range(8):
        first, second = os.urandom(size), os.urandom(size)
        started = registry.start_upload(repo)
        location = started.header("Location")
        data_file = registry.uploads_dir(repo) / started.header("Docker-Upload-UUID") / "data"
        barrier = threading.Barrier(2)

        def patch(chunk, location=location, barrier=barrier):
            barrier.wait(10)
            return registry.request(
                "PATCH", location, chunk, headers={"Content-Range": f"0-{size - 1}"}
            )

        with ThreadPoolExecutor(2) as pool:
            statuses = sorted(response.status for response in pool.map(patch, [first, second]))
        assert statuses in ([202, 202], [202, 416]), statuses
        stored = data_file.read_bytes()
        assert stored in (first, second, first + second, second + first)
        assert _status_range(registry, _bare(location)) == f"0-{len(stored) - 1}"
        response = registry.request("PUT", _with(_bare(location), digest=sha256(first)))
        if stored == first:
            assert response.status == 201, response.body
            fetched = registry.request("GET", f"{repo}/blobs/{sha256(first)}").body
            assert fetched == first
        else:
            _assert_error(response, 400, "DIGEST_INVALID")
            assert _blob_data_files(registry, sha256(first)) == []


def test_concurrent_monolithic_pushes(registry, repo):
    data = os.urandom(256 * 1024)
    digest = sha256(data)
    with ThreadPoolExecutor(6) as pool:
        statuses = list(
            pool.map(
                lambda index: (
                    registry.request(
                        "POST", f"{repo}-{index % 2}/blobs/uploads/?digest={digest}", data
                    ).status
                ),
                range(6),
            )
        )
    assert statuses == [201] * 6
    assert registry.blob_file(digest).read_bytes() == data
    assert len([p for p in _blob_data_files(registry, digest) if p.name == "data"]) == 1


def test_upload_continued_on_another_process(registry, repo, start_registry):
    """Upload state lives in storage: any process with the secret carries on."""
    other = start_registry(root=registry.root)
    data = os.urandom(40_000)
    started = registry.start_upload(repo)
    upload_id = started.header("Docker-Upload-UUID")
    location = started.header("Location")
    # PATCH on the first, then on the second, then the first again.
    response = registry.request(
        "PATCH", location, data[:10_000], headers={"Content-Range": "0-9999"}
    )
    assert response.status == 202
    response = other.request(
        "PATCH",
        response.header("Location"),
        data[10_000:25_000],
        headers={"Content-Range": "10000-24999"},
    )
    assert response.status == 202, response.body
    assert response.header("Range") == "0-24999"
    assert response.header("Docker-Upload-UUID") == upload_id
    # The first process's Location from before is stale there too.
    stale = registry.request("PATCH", location, b"x")
    _assert_error(stale, 416, "RANGE_INVALID")
    assert stale.header("Range") == "0-24999"
    response = registry.request("PATCH", response.header("Location"), data[25_000:30_000])
    assert response.status == 202
    assert _status_range(other, response.header("Location")) == "0-29999"
    # The second finishes it, with the last chunk in the PUT.
    done = other.request(
        "PUT", _with(response.header("Location"), digest=sha256(data)), data[30_000:]
    )
    assert done.status == 201, done.body
    assert done.header("Location") == f"{other.url}/v2/{repo}/blobs/{sha256(data)}"
    assert registry.request("GET", f"{repo}/blobs/{sha256(data)}").body == data
    assert other.request("GET", f"{repo}/blobs/{sha256(data)}").body == data
    _assert_no_upload_left(registry, repo)


def test_upload_finished_on_another_process_with_put_only(registry, repo, start_registry):
    other = start_registry(root=registry.root)
    data = os.urandom(20_000)
    location = registry.start_upload(repo).header("Location")
    location = registry.request("PATCH", location, data).header("Location")
    done = other.request("PUT", _with(location, digest=sha256(data)))
    assert done.status == 201, done.body
    # A wrong digest on the other process removes the upload for both.
    location = registry.start_upload(repo).header("Location")
    location = registry.request("PATCH", location, data).header("Location")
    _assert_error(other.request("PUT", _with(location, digest=MISSING)), 400, "DIGEST_INVALID")
    _assert_error(registry.request("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")


# -- clients that leave ----------------------------------------------------------------------


def _send_and_leave(registry, method, location, declared, data, headers=None):
    """Send a request declaring C{declared} body bytes, send C{data}, hang up."""
    parts = urlsplit(registry.resolve(location))
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {declared}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", registry.process.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)


def _wait_for_range(registry, location, expected, timeout=10.0):
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = _status_range(registry, location)
        if seen == expected:
            return
        time.sleep(0.02)
    raise AssertionError(f"upload range stayed {seen}, expected {expected}")


@pytest.mark.parametrize("sent", [1000, 300_000, 3 * 1024 * 1024])
def test_client_leaves_during_patch(registry, repo, sent):
    """
    What arrived is kept and the upload resumes from there, however early
    the client left (before or after the upload was open for writing).
    """
    data = os.urandom(sent + 5000)
    location = registry.start_upload(repo).header("Location")
    location = registry.request("PATCH", location, data[:100]).header("Location")
    _send_and_leave(
        registry,
        "PATCH",
        location,
        len(data) - 100,
        data[100:sent],
        headers={"Content-Range": f"100-{len(data) - 1}"},
    )
    _wait_for_range(registry, _bare(location), f"0-{sent - 1}")
    status = registry.request("GET", _bare(location))
    fresh = status.header("Location")
    response = registry.request(
        "PATCH", fresh, data[sent:], headers={"Content-Range": f"{sent}-{len(data) - 1}"}
    )
    assert response.status == 202, response.body
    done = registry.request("PUT", _with(response.header("Location"), digest=sha256(data)))
    assert done.status == 201, done.body
    assert registry.request("GET", f"{repo}/blobs/{sha256(data)}").body == data


def test_client_leaves_during_put(registry, repo):
    """A PUT cut short commits nothing; the bytes that arrived are kept."""
    data = os.urandom(200_000)
    location = registry.start_upload(repo).header("Location")
    _send_and_leave(
        registry, "PUT", _with(location, digest=sha256(data)), len(data), data[:120_000]
    )
    _wait_for_range(registry, _bare(location), "0-119999")
    assert _blob_data_files(registry, sha256(data)) == []
    response = registry.request("PUT", _with(_bare(location), digest=sha256(data)), data[120_000:])
    assert response.status == 201, response.body
    assert registry.request("GET", f"{repo}/blobs/{sha256(data)}").body == data


def test_client_leaves_during_monolithic_post(registry, repo):
    """A monolithic upload cut short is dropped entirely."""
    data = os.urandom(200_000)
    _send_and_leave(
        registry, "POST", f"{repo}/blobs/uploads/?digest={sha256(data)}", len(data), data[:50_000]
    )
    # The upload may be created after the client left: wait until there
    # has been none for a while.
    deadline = time.monotonic() + 10
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < 0.5:
        if registry.upload_entries(repo):
            quiet_since = time.monotonic()
        time.sleep(0.01)
    _assert_no_upload_left(registry, repo)
    assert _blob_data_files(registry, sha256(data)) == []


# -- a large streamed chunk --------------------------------------------------------------------


def _peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_large_streamed_patch(start_registry):
    """
    64 MiB in one chunked PATCH: the bytes reach storage while the request
    is still arriving (not buffered until the end), and the server's peak
    memory grows by much less than the body.
    """
    server = start_registry()
    pid = server.process.process.pid
    started = server.start_upload("big")
    upload_id = started.header("Docker-Upload-UUID")
    data_file = server.uploads_dir("big") / upload_id / "data"
    peak_before = _peak_rss_kib(pid)
    mib = 1024 * 1024
    block = os.urandom(mib)
    hasher = hashlib.sha256()
    seen_on_disk_midway = []

    def body():
        for index in range(64):
            if index == 48:
                # 48 MiB are sent: most must be in storage already.
                deadline = time.monotonic() + 10
                while data_file.stat().st_size < 32 * mib and time.monotonic() < deadline:
                    time.sleep(0.01)
                seen_on_disk_midway.append(data_file.stat().st_size)
            chunk = index.to_bytes(4, "big") + block[4:]
            hasher.update(chunk)
            yield chunk

    response = server.request("PATCH", started.header("Location"), body(), timeout=120)
    assert response.status == 202, response.body
    assert response.header("Range") == f"0-{64 * mib - 1}"
    assert seen_on_disk_midway[0] >= 32 * mib
    growth_mib = (_peak_rss_kib(pid) - peak_before) / 1024
    assert growth_mib < 40, f"peak memory grew by {growth_mib:.0f} MiB"
    digest = "sha256:" + hasher.hexdigest()
    done = server.request("PUT", _with(response.header("Location"), digest=digest))
    assert done.status == 201, done.body
    assert server.blob_file(digest).stat().st_size == 64 * mib
    fetched = server.request("GET", f"big/blobs/{digest}", headers={"Range": "bytes=-8"})
    assert fetched.body == block[-8:]
    head = server.request("HEAD", f"big/blobs/{digest}")
    assert head.header("Content-Length") == str(64 * mib)


# -- bad input never breaks the server -----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix", "body", "headers", "status", "code"),
    [
        (
            "PATCH",
            "",
            b"abc",
            {"Content-Range": "99999999999999999999999-999999999999999999999999"},
            416,
            "RANGE_INVALID",
        ),
        ("PATCH", "", b"abc", {"Content-Range": "0-99999999999999999999999"}, 400, "SIZE_INVALID"),
        # More digits than int() reads (each was a 500).
        ("PATCH", "", b"abc", {"Content-Range": "0-" + "9" * 5000}, 400, "SIZE_INVALID"),
        (
            "PATCH",
            "",
            b"abc",
            {"Content-Range": "9" * 5000 + "-" + "9" * 5001},
            416,
            "RANGE_INVALID",
        ),
        # Header bytes that are not UTF-8 (http.client sends str as Latin-1).
        ("PATCH", "", b"abc", {"Content-Range": "\u00e9-\u00e9"}, 416, "RANGE_INVALID"),
        ("PATCH", "", b"abc", {"Content-Range": "0-\u00b2"}, 416, "RANGE_INVALID"),
        ("PUT", "&digest=%ff%fe", b"abc", {}, 400, "DIGEST_INVALID"),
        ("PUT", "&digest=sha256:" + "a" * 5000, None, {}, 400, "DIGEST_INVALID"),
        ("PUT", "&digest=" + MISSING + "&digest=" + EMPTY, None, {}, 400, "DIGEST_INVALID"),
    ],
)
def test_bad_input_on_an_upload(registry, repo, method, suffix, body, headers, status, code):
    location = registry.start_upload(repo).header("Location")
    response = registry.request(method, location + suffix, body, headers=headers)
    _assert_error(response, status, code)


@pytest.mark.parametrize(
    "query", ["_state=%ff", "_state=" + "A" * 8000, "_state=%00%00", "_state=%C3%A9"]
)
def test_bad_state_with_a_body(registry, repo, query):
    location = registry.start_upload(repo).header("Location")
    response = registry.request("PATCH", f"{_bare(location)}?{query}", b"abc")
    _assert_error(response, 404, "BLOB_UPLOAD_INVALID")
    assert _status_range(registry, location) == "0-0"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Host": "caf\u00e9.example"},
        {"X-Forwarded-Proto": "\u00e9"},
        {"Host": "\u00ff\u00fe"},
    ],
)
def test_headers_that_are_not_utf8_in_locations(registry, repo, headers):
    response = registry.request("POST", f"{repo}/blobs/uploads/", headers=headers)
    assert response.status == 202
    assert response.header("Location")


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("digest=%00", 400, "DIGEST_INVALID"),
        ("mount=%ff&from=%ff", 400, "NAME_INVALID"),
        (f"mount={EMPTY}&from=../../etc", 400, "NAME_INVALID"),
        (f"mount={EMPTY}&from=" + "a/" * 200 + "a", 400, "NAME_INVALID"),
        ("mount=%ff&from=library/x", 400, "DIGEST_INVALID"),
        (f"digest={EMPTY}&mount={EMPTY}&from=Foo", 400, "NAME_INVALID"),
        ("from=library/x", 202, None),
        (f"digest={EMPTY}&mount={EMPTY}&from=library/x", 202, None),
    ],
)
def test_odd_queries_on_post(registry, repo, query, status, code):
    response = registry.request("POST", f"{repo}/blobs/uploads/?{query}", b"")
    assert response.status == status, response.body
    if code is not None:
        assert response.error_codes() == [code]
    else:
        assert response.header("Docker-Upload-UUID")
