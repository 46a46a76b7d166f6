"""
The API root, routing and repository names, over real HTTP against a
txregistry process: C{GET /v2/}, unknown paths, methods a route does not
answer, names the grammar refuses and names that look like routes.

Every request goes through C{Registry.request} (see conftest), which also
checks that no response is a 5xx and that each carries the API version
header and the configured C{X-Content-Type-Options}.
"""

from __future__ import annotations

import json
import os
import socket

import pytest

from support import MISSING, assert_error, sha256


def test_version_check_get(registry):
    response = registry.request("GET", "")
    assert response.status == 200
    assert response.json() == {}
    assert response.header("Content-Type").startswith("application/json")
    assert response.header("Docker-Distribution-API-Version") == "registry/2.0"
    assert response.header("X-Content-Type-Options") == "nosniff"
    assert response.header("Content-Length") == "2"


def test_version_check_without_trailing_slash(registry):
    response = registry.request("GET", "/v2")
    assert response.status == 200
    assert response.json() == {}


def test_version_check_head(registry):
    response = registry.request("HEAD", "")
    assert response.status == 200
    assert response.body == b""
    assert response.header("Docker-Distribution-API-Version") == "registry/2.0"
    assert response.header("X-Content-Type-Options") == "nosniff"


def test_version_check_ignores_query(registry):
    response = registry.request("GET", "?n=1&last=x")
    assert response.status == 200
    assert response.json() == {}


def _assert_error(response, status, code):
    assert_error(response, status, code)
    document = response.json()
    assert isinstance(document["errors"], list) and document["errors"]
    for error in document["errors"]:
        assert isinstance(error["message"], str)
    assert response.header("Docker-Distribution-API-Version") == "registry/2.0"
    assert response.header("X-Content-Type-Options") == "nosniff"
    assert int(response.header("Content-Length")) == len(response.body)


@pytest.mark.parametrize(
    "path",
    [
        "nothing",
        "foo/bar",
        "foo/blobs/",
        "foo/blobs",
        "foo/tags",
        "foo/uploads/x",
        "_catalogue",
    ],
)
def test_unknown_path_below_v2(registry, path):
    response = registry.request("GET", path)
    _assert_error(response, 404, "UNSUPPORTED")


@pytest.mark.parametrize("path", ["/foo", "/", "/v3/", "/v2x", "/foo/v2/"])
def test_unknown_path_outside_v2(registry, path):
    """Even outside the API root the answer is the API's: JSON, with its headers."""
    response = registry.request("GET", path)
    _assert_error(response, 404, "UNSUPPORTED")


def test_unknown_path_outside_v2_with_body(registry):
    response = registry.request("POST", "/foo", b"x" * 1000)
    _assert_error(response, 404, "UNSUPPORTED")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "", "GET, HEAD"),
        ("POST", "", "GET, HEAD"),
        ("DELETE", "", "GET, HEAD"),
        ("PATCH", "", "GET, HEAD"),
        ("PUT", f"foo/blobs/{MISSING}", "DELETE, GET, HEAD"),
        ("POST", f"foo/blobs/{MISSING}", "DELETE, GET, HEAD"),
        ("PATCH", f"foo/blobs/{MISSING}", "DELETE, GET, HEAD"),
        ("GET", "foo/blobs/uploads/", "POST"),
        ("PUT", "foo/blobs/uploads/", "POST"),
        ("PATCH", "foo/blobs/uploads", "POST"),
        ("DELETE", "foo/blobs/uploads/", "POST"),
        ("POST", "foo/blobs/uploads/some-id", "DELETE, GET, HEAD, PATCH, PUT"),
    ],
)
def test_wrong_method(registry, method, path, allow):
    response = registry.request(method, path)
    _assert_error(response, 405, "UNSUPPORTED")
    assert response.header("Allow") == allow


@pytest.mark.parametrize("method", ["PUT", "PATCH", "POST"])
def test_wrong_method_with_a_body(registry, method):
    """The body is read and dropped; the answer is still 405."""
    response = registry.request(method, f"foo/blobs/{MISSING}", os.urandom(70_000))
    _assert_error(response, 405, "UNSUPPORTED")
    assert response.header("Allow") == "DELETE, GET, HEAD"


def test_wrong_method_with_a_streamed_body(registry):
    chunks = [os.urandom(50_000) for _ in range(4)]
    response = registry.request("PUT", "", iter(chunks))
    _assert_error(response, 405, "UNSUPPORTED")


def test_error_on_head_has_headers_and_no_body(registry):
    response = registry.request("HEAD", f"foo/blobs/{MISSING}")
    assert response.status == 404
    assert response.body == b""
    assert response.header("Docker-Distribution-API-Version") == "registry/2.0"
    assert response.header("Content-Type").startswith("application/json")


INVALID_NAMES = [
    "Foo",
    "foo/Bar",
    "a" * 256,
    "a//b",
    "a/",
    "-a",
    "a-",
    "a..b",
    "a/./b",
    "a/../b",
    "localhost:5000/foo",
    "example.com:443/foo/bar",
    "a%20b",
    "a%00b",
    "%ff",
    "caf%C3%A9",
]


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_name_blob_route(registry, name):
    for method in ("GET", "HEAD", "DELETE"):
        response = registry.request(method, f"{name}/blobs/{MISSING}")
        assert response.status == 400, (method, response.body)
        if method != "HEAD":
            _assert_error(response, 400, "NAME_INVALID")


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_name_upload_routes(registry, name):
    _assert_error(registry.request("POST", f"{name}/blobs/uploads/"), 400, "NAME_INVALID")
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        response = registry.request(method, f"{name}/blobs/uploads/some-id")
        _assert_error(response, 400, "NAME_INVALID")


def test_invalid_name_upload_with_body(registry):
    """A body sent to an invalid name is refused, not stored anywhere."""
    data = os.urandom(10_000)
    response = registry.request("POST", f"Foo/blobs/uploads/?digest={sha256(data)}", data)
    _assert_error(response, 400, "NAME_INVALID")
    assert not registry.blob_file(sha256(data)).exists()
    response = registry.request("PATCH", "a//b/blobs/uploads/some-id", data)
    _assert_error(response, 400, "NAME_INVALID")


def test_longest_name_is_valid(registry):
    name = "a" * 255
    response = registry.request("GET", f"{name}/blobs/{MISSING}")
    _assert_error(response, 404, "BLOB_UNKNOWN")


@pytest.mark.parametrize(
    "name",
    [
        "a/b/c",
        "library/ubuntu",
        "x.y/z__w/u-v---t",
        "foo/blobs/bar",
        "foo/uploads/bar",
        "foo/blobs/uploads/bar",
        "foo/blobs/uploads",
        "blobs",
        "blobs/blobs",
        "uploads/blobs/uploads",
        "example.com/foo",
    ],
)
def test_names_that_look_like_routes(registry, name):
    """Names are greedy: every route works for names holding blobs/uploads components."""
    data = os.urandom(4096) + name.encode()
    digest = sha256(data)
    # Chunked upload: POST, PATCH, GET status, PUT.
    started = registry.start_upload(name)
    location = started.header("Location")
    assert f"/v2/{name}/blobs/uploads/" in location
    patched = registry.request("PATCH", location, data)
    assert patched.status == 202
    assert patched.header("Range") == f"0-{len(data) - 1}"
    status = registry.request("GET", patched.header("Location"))
    assert status.status == 204
    assert status.header("Range") == f"0-{len(data) - 1}"
    done = registry.request("PUT", f"{patched.header('Location')}&digest={digest}")
    assert done.status == 201, done.body
    assert done.header("Location") == f"{registry.api}{name}/blobs/{digest}"
    # Fetch it back through the blob route.
    fetched = registry.request("GET", f"{name}/blobs/{digest}")
    assert fetched.status == 200
    assert fetched.body == data
    assert registry.link_file(name, digest).exists()
    # A repository whose name is a prefix of this one does not have it.
    parent = name.rsplit("/", 1)[0]
    if parent != name:
        response = registry.request("GET", f"{parent}/blobs/{digest}")
        _assert_error(response, 404, "BLOB_UNKNOWN")
    # Delete it, and cancel an upload, under this name.
    assert registry.request("DELETE", f"{name}/blobs/{digest}").status == 202
    upload = registry.start_upload(name).header("Location")
    assert registry.request("DELETE", upload).status == 204
    assert registry.upload_entries(name) == []


def test_percent_encoded_slashes_in_name(registry, repo):
    """The path is decoded before routing, as Distribution's router does."""
    data = os.urandom(1000)
    digest = registry.push(repo, data)
    encoded = repo.replace("/", "%2F")
    response = registry.request("GET", f"{encoded}/blobs/{digest}")
    assert response.status == 200
    assert response.body == data


def _raw_exchange(registry, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", registry.process.port), timeout=10) as sock:
        sock.sendall(raw)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def test_http_1_0_request(registry):
    raw = _raw_exchange(registry, b"GET /v2/ HTTP/1.0\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200")
    assert b"docker-distribution-api-version: registry/2.0" in head.lower()
    assert json.loads(body) == {}


def test_absolute_form_request_target(registry):
    """A proxy-style absolute URI in the request line routes by its path."""
    raw = _raw_exchange(
        registry,
        f"GET {registry.url}/v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert json.loads(body) == {}


@pytest.mark.parametrize(
    "target",
    [
        b"/v2/caf\xe9/blobs/" + MISSING.encode(),
        b"/v2/foo/blobs/sha256:\xff\xfe",
        b"/v2/foo/blobs/uploads/x?_state=\xff",
        b"/\xff",
    ],
)
def test_raw_bytes_in_the_request_target(registry, target):
    """
    Bytes that are not ASCII in the request line are refused with a 400 by
    Twisted's HTTP parser, before the API sees the request (so without the
    API's headers), and the server carries on.
    """
    raw = _raw_exchange(
        registry, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert raw.startswith(b"HTTP/1.1 400 "), raw[:200]
    assert registry.request("GET", "").json() == {}
