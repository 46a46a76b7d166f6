"""
C{GET} and C{HEAD /v2/_catalog} over real HTTP against txregistry processes
of their own (the shared one holds every other test's repositories): the
repositories that hold manifests or blobs (as Distribution 2.8 lists them),
sorted component by component, paged with C{n} (100 by default, at most
C{catalog.maxentries}) and C{last}, with an RFC 5988 C{Link} header only
while more remain.
"""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from manifest_support import (
    OCI_CONFIG,
    OCI_MANIFEST,
    Images,
    assert_error,
    descriptor,
    encode,
    link_header,
)

# In catalog order: component by component, so "a/b" comes before "a-b",
# which plain string order puts first.
NAMES = ["a", "a/b", "a/b/c", "a/b/c/d", "a-b", "a-b/a", "a.b", "a0", "a_b", "b", "b/a"]
# In catalog order, repositories below folders that are none ("lib",
# "lib/y").
NESTED = ["app", "app/api", "app-db", "lib/x", "lib/y/z", "lib0"]


def _push_repositories(server, names):
    """An empty index, which references nothing, pushed to each of C{names}."""

    def push(name):
        images = Images(server, name)
        images.push("latest", images.index([]))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(push, names))


def _catalog(server, query="", method="GET"):
    return server.request(method, f"_catalog{query}")


def _assert_catalog(response, names):
    assert response.status == 200, response.body
    assert response.header("Content-Type") == "application/json; charset=utf-8"
    assert int(response.header("Content-Length")) == len(response.body)
    assert response.json() == {"repositories": names}


def _next(link):
    """The path a C{Link} header points at."""
    return link[1 : link.index(">")]


@pytest.fixture(scope="module")
def server(module_registry):
    """The module's process, with C{NAMES} pushed in a shuffled order, and nothing else."""
    server = module_registry
    names = NAMES[:]
    random.Random(3).shuffle(names)
    _push_repositories(server, names)
    return server


def test_empty(start_registry):
    server = start_registry()
    response = _catalog(server)
    _assert_catalog(response, [])
    assert response.header("Link") is None


def test_repositories_with_manifests(start_registry):
    """Uploads in progress and refused manifests make no repository."""
    server = start_registry()
    _push_repositories(server, ["with/manifest"])
    server.start_upload("upload/only")
    assert_error(server.request("GET", "fetched/manifests/latest"), 404, "MANIFEST_UNKNOWN")
    unknown = descriptor(OCI_CONFIG, os.urandom(8))
    content = encode(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": unknown, "layers": []}
    )
    refused = Images(server, "refused/manifest").put("latest", content)
    assert_error(refused, 400, "MANIFEST_BLOB_UNKNOWN")
    invalid = Images(server, "invalid/manifest").put("latest", b"{}")
    assert_error(invalid, 400, "MANIFEST_INVALID")
    response = _catalog(server)
    _assert_catalog(response, ["with/manifest"])
    assert response.header("Link") is None


def test_repository_with_blobs_only(start_registry):
    """
    A repository that holds blobs and no manifest is listed, as Distribution
    2.8 lists it (by its C{_layers}; 3.0 lists by C{_manifests} instead).
    """
    server = start_registry()
    _push_repositories(server, ["with/manifest"])
    server.push("blobs/only", b"some bytes")
    server.start_upload("upload/only")
    _assert_catalog(_catalog(server), ["blobs/only", "with/manifest"])


def test_sorted_component_by_component(server):
    response = _catalog(server)
    _assert_catalog(response, NAMES)
    assert response.header("Link") is None
    head = _catalog(server, method="HEAD")
    assert head.status == 200
    assert head.body == b""
    assert head.header("Content-Length") == response.header("Content-Length")


@pytest.mark.parametrize("count", [1, 2, 4, 10, 11])
def test_pages(server, count):
    seen = []
    response = _catalog(server, f"?n={count}")
    while True:
        names = response.json()["repositories"]
        assert 0 < len(names) <= count
        seen += names
        link = response.header("Link")
        if link is None:
            break
        assert len(names) == count
        assert link == link_header(f"/v2/_catalog?last={quote(names[-1], safe='')}&n={count}")
        response = server.request("GET", _next(link))
        assert response.status == 200
    assert seen == NAMES


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        ("a/b", ["a/b/c", "a/b/c/d", "a-b", "a-b/a", "a.b", "a0", "a_b", "b", "b/a"]),
        ("a/b/c/d", ["a-b", "a-b/a", "a.b", "a0", "a_b", "b", "b/a"]),
        ("a/z", ["a-b", "a-b/a", "a.b", "a0", "a_b", "b", "b/a"]),
        ("a-b", ["a-b/a", "a.b", "a0", "a_b", "b", "b/a"]),
        ("a0/zzz", ["a_b", "b", "b/a"]),
        ("b/a", []),
        ("c", []),
        # Longer than a file's name may be.
        ("a" * 300, ["b", "b/a"]),
        ("a/" + "b" * 300, ["a-b", "a-b/a", "a.b", "a0", "a_b", "b", "b/a"]),
    ],
)
def test_last(server, last, expected):
    """C{last} compares component by component, and need not be listed."""
    response = _catalog(server, f"?last={quote(last, safe='')}")
    _assert_catalog(response, expected)
    assert response.header("Link") is None
    # Unencoded slashes in the query are the same.
    _assert_catalog(_catalog(server, f"?last={last}"), expected)


def test_link_only_while_more_remain(server):
    first = _catalog(server, "?n=10")
    _assert_catalog(first, NAMES[:10])
    assert first.header("Link") == link_header("/v2/_catalog?last=b&n=10")
    rest = server.request("GET", _next(first.header("Link")))
    _assert_catalog(rest, ["b/a"])
    assert rest.header("Link") is None
    exact = _catalog(server, f"?n={len(NAMES)}")
    _assert_catalog(exact, NAMES)
    assert exact.header("Link") is None


@pytest.mark.parametrize("query", ["?n=0", "?n=0&last=a"])
def test_n_zero(server, query):
    response = _catalog(server, query)
    _assert_catalog(response, [])
    assert response.header("Link") is None


@pytest.mark.parametrize("count", ["-1", "abc", "1.5", "%C2%B2", "1001", "9" * 30, "9" * 5000])
def test_invalid_n(server, count):
    """Not a whole number, or past C{catalog.maxentries} (1000 by default)."""
    assert_error(_catalog(server, f"?n={count}"), 400, "PAGINATION_NUMBER_INVALID")
    assert _catalog(server, f"?n={count}", method="HEAD").status == 400


def test_n_up_to_the_maximum(server):
    response = _catalog(server, "?n=1000")
    _assert_catalog(response, NAMES)
    assert response.header("Link") is None


def test_default_page_of_100(start_registry):
    server = start_registry()
    names = sorted(f"many/r{index:03d}" for index in range(103))
    _push_repositories(server, names)
    first = _catalog(server)
    _assert_catalog(first, names[:100])
    assert first.header("Link") == link_header(
        f"/v2/_catalog?last={quote(names[99], safe='')}&n=100"
    )
    rest = server.request("GET", _next(first.header("Link")))
    _assert_catalog(rest, names[100:])
    assert rest.header("Link") is None


def test_configured_maximum(start_registry_with):
    server = start_registry_with({"catalog": {"maxentries": 3}})
    _push_repositories(server, NAMES)
    first = _catalog(server)
    _assert_catalog(first, NAMES[:3])
    assert first.header("Link") == link_header(f"/v2/_catalog?last={quote(NAMES[2], safe='')}&n=3")
    _assert_catalog(_catalog(server, "?n=3"), NAMES[:3])
    _assert_catalog(_catalog(server, "?n=2"), NAMES[:2])
    for count in ("4", "100", "1000"):
        assert_error(_catalog(server, f"?n={count}"), 400, "PAGINATION_NUMBER_INVALID")
    seen = []
    response = first
    while True:
        seen += response.json()["repositories"]
        link = response.header("Link")
        if link is None:
            break
        response = server.request("GET", _next(link))
    assert seen == NAMES


def test_pages_of_nested_repositories(start_registry):
    """
    First, middle and last page (full, yet with no C{Link}: nothing follows)
    of repositories below folders that are no repository, beside folders
    that hold uploads only; and pages after a C{last} that names no
    repository.
    """
    server = start_registry()
    _push_repositories(server, NESTED)
    for name in ("lib/uploads-only", "uploads-only", "app/uploads-only", "lib/y/z/uploads"):
        server.start_upload(name)
    _assert_catalog(_catalog(server), NESTED)
    response = _catalog(server, "?n=2")
    for start in (0, 2, 4):
        _assert_catalog(response, NESTED[start : start + 2])
        link = response.header("Link")
        if start == 4:
            assert link is None
            break
        last = quote(NESTED[start + 1], safe="")
        assert link == link_header(f"/v2/_catalog?last={last}&n=2")
        response = server.request("GET", _next(link))
    for last in ("0", "app", "app/a", "app/api/x", "app-", "lib", "lib/x", "lib/y", "lib1", "z"):
        expected = [name for name in NESTED if name.split("/") > last.split("/")]
        response = _catalog(server, f"?n=3&last={quote(last, safe='')}")
        _assert_catalog(response, expected[:3])
        if len(expected) > 3:
            assert response.header("Link") == link_header(
                f"/v2/_catalog?last={quote(expected[2], safe='')}&n=3"
            )
        else:
            assert response.header("Link") is None


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE"])
def test_wrong_method(registry, method):
    response = registry.request(method, "_catalog")
    assert_error(response, 405, "UNSUPPORTED")
    assert response.header("Allow") == "GET, HEAD"
