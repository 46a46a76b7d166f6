"""
C{GET} and C{HEAD /v2/<name>/tags/list} over real HTTP against txregistry
processes: tags sorted, paged with C{n} and C{last} and an RFC 5988 C{Link}
header only while more remain, invalid C{n}, unknown repositories, and
repositories whose tags were all deleted.
"""

from __future__ import annotations

import random
from urllib.parse import quote

import pytest

from manifest_support import Images, assert_error, link_header, sha256

# Every character a tag may hold, in an order that is not code point order.
TAGS = ["latest", "v2", "V2", "1.0", "10", "9", "_x", "a-b", "a.b", "a_b", "a", "Z"]


@pytest.fixture
def images(registry, repo):
    """Pushes to C{repo} of the shared registry."""
    return Images(registry, repo)


@pytest.fixture
def tagged(images):
    """C{TAGS} pushed to C{repo} (two manifests), in a shuffled order; sorted."""
    contents = [images.image(), images.image()]
    order = TAGS[:]
    random.Random(7).shuffle(order)
    for index, tag in enumerate(order):
        images.push(tag, contents[index % 2])
    return sorted(TAGS)


def _assert_tags(response, name, tags):
    assert response.status == 200, response.body
    assert response.header("Content-Type") == "application/json; charset=utf-8"
    assert int(response.header("Content-Length")) == len(response.body)
    assert response.json() == {"name": name, "tags": tags}


def test_tags_sorted(images, repo, tagged):
    assert tagged == ["1.0", "10", "9", "V2", "Z", "_x", "a", "a-b", "a.b", "a_b", "latest", "v2"]
    response = images.tags()
    _assert_tags(response, repo, tagged)
    assert response.header("Link") is None
    head = images.registry.request("HEAD", f"{repo}/tags/list")
    assert head.status == 200
    assert head.body == b""
    assert head.header("Content-Length") == response.header("Content-Length")


def test_one_tag(images, repo):
    images.push("only", images.image())
    _assert_tags(images.tags(), repo, ["only"])


@pytest.mark.parametrize("count", [1, 3, 5, 6, 11])
def test_pages(images, repo, tagged, count):
    """Following C{Link} from the first page visits every tag once, in order."""
    seen = []
    response = images.tags(f"?n={count}")
    pages = 0
    while True:
        pages += 1
        document = response.json()
        assert document["name"] == repo
        assert len(document["tags"]) <= count
        seen += document["tags"]
        link = response.header("Link")
        if link is None:
            break
        assert len(document["tags"]) == count
        last = document["tags"][-1]
        assert link == link_header(f"/v2/{repo}/tags/list?last={quote(last)}&n={count}")
        response = images.registry.request("GET", link[1 : link.index(">")])
    assert seen == tagged
    assert pages == -(-len(tagged) // count)


def test_link_only_while_more_remain(images, repo, tagged):
    first = images.tags("?n=11")
    assert first.json()["tags"] == tagged[:11]
    assert first.header("Link") == link_header(f"/v2/{repo}/tags/list?last={tagged[10]}&n=11")
    # Exactly the rest: no next page.
    rest = images.tags(f"?n=1&last={tagged[10]}")
    _assert_tags(rest, repo, tagged[11:])
    assert rest.header("Link") is None
    everything = images.tags(f"?n={len(tagged)}")
    _assert_tags(everything, repo, tagged)
    assert everything.header("Link") is None
    more = images.tags("?n=1000")
    _assert_tags(more, repo, tagged)
    assert more.header("Link") is None


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        ("a", ["a-b", "a.b", "a_b", "latest", "v2"]),
        ("a-a", ["a-b", "a.b", "a_b", "latest", "v2"]),
        ("Zzz", ["_x", "a", "a-b", "a.b", "a_b", "latest", "v2"]),
        ("0", ["1.0", "10", "9", "V2", "Z", "_x", "a", "a-b", "a.b", "a_b", "latest", "v2"]),
        ("v2", []),
        ("zzz", []),
    ],
)
def test_last(images, repo, tagged, last, expected):
    """C{last} need not be a tag; the page starts after it."""
    response = images.tags(f"?last={last}")
    _assert_tags(response, repo, expected)
    assert response.header("Link") is None
    paged = images.tags(f"?last={last}&n=2")
    _assert_tags(paged, repo, expected[:2])
    if len(expected) > 2:
        assert paged.header("Link") == link_header(
            f"/v2/{repo}/tags/list?last={quote(expected[1])}&n=2"
        )
    else:
        assert paged.header("Link") is None


@pytest.mark.parametrize("query", ["?n=0", "?n=0&last=a", "?n=00"])
def test_n_zero(images, repo, tagged, query):
    response = images.tags(query)
    _assert_tags(response, repo, [])
    assert response.header("Link") is None


@pytest.mark.parametrize("query", ["?n=", "?last=", "?n=&last=", "?other=1"])
def test_empty_parameters(images, repo, tagged, query):
    response = images.tags(query)
    _assert_tags(response, repo, tagged)
    assert response.header("Link") is None


@pytest.mark.parametrize(
    "count",
    ["-1", "abc", "1.5", "1e3", "0x10", "%201", "1%20", "%2B1", "%C2%B2", "%D9%A3", "%EF%BC%91"],
)
def test_invalid_n(images, repo, tagged, count):
    assert_error(images.tags(f"?n={count}"), 400, "PAGINATION_NUMBER_INVALID")
    assert images.registry.request("HEAD", f"{repo}/tags/list?n={count}").status == 400


def test_huge_n(images, repo, tagged):
    response = images.tags("?n=" + "9" * 40)
    _assert_tags(response, repo, tagged)
    assert response.header("Link") is None


def test_n_of_more_digits_than_int_reads(images, repo, tagged):
    """Was a 500: int() reads no more than 4300 digits."""
    response = images.tags("?n=" + "9" * 5000)
    _assert_tags(response, repo, tagged)
    assert response.header("Link") is None
    response = images.tags("?n=" + "0" * 5000 + "2")
    _assert_tags(response, repo, tagged[:2])
    assert response.header("Link") == link_header(f"/v2/{repo}/tags/list?last={tagged[1]}&n=2")


def test_unknown_repository(images, repo):
    response = images.tags()
    assert_error(response, 404, "NAME_UNKNOWN")
    assert response.json()["errors"][0]["detail"] == {"name": repo}
    head = images.registry.request("HEAD", f"{repo}/tags/list")
    assert head.status == 404
    assert head.body == b""


def test_invalid_n_of_unknown_repository(images, repo):
    """An unknown repository is said so before an invalid C{n} is."""
    assert_error(images.tags("?n=abc"), 404, "NAME_UNKNOWN")
    assert_error(images.tags("?n=-1&last=a"), 404, "NAME_UNKNOWN")


def test_pages_of_versions(images, repo):
    """
    Tags that begin others before a C{-} or a C{.} sort before them, on
    every page: first, middle, and a last one that is full but has no
    C{Link}, as nothing follows.
    """
    versions = ["1", "1.0", "1.0-alpine", "1.0.1", "1.0.1-slim", "10"]
    content = images.image()
    for tag in reversed(versions):
        images.push(tag, content)
    response = images.tags("?n=2")
    for start in (0, 2, 4):
        _assert_tags(response, repo, versions[start : start + 2])
        link = response.header("Link")
        if start == 4:
            assert link is None
            break
        assert link == link_header(f"/v2/{repo}/tags/list?last={versions[start + 1]}&n=2")
        response = images.registry.request("GET", link[1 : link.index(">")])
    for last in ("0", "1", "1.0", "1.0-", "1.0.0", "1.0.1-slim", "2"):
        expected = [tag for tag in versions if tag > last]
        _assert_tags(images.tags(f"?n=3&last={last}"), repo, expected[:3])


def test_repository_with_blobs_only(registry, images, repo):
    registry.push(repo, b"a blob")
    assert_error(images.tags(), 404, "NAME_UNKNOWN")


def test_repository_with_untagged_manifests_only(images):
    """As Distribution: a repository that never had a tag is unknown to the tag list."""
    content = images.image()
    images.push(sha256(content), content)
    assert_error(images.tags(), 404, "NAME_UNKNOWN")


def test_all_tags_deleted(images, repo):
    first = images.image()
    second = images.image()
    images.push("one", first)
    images.push("two", first)
    second_digest = images.push("three", second)
    assert images.delete("one").status == 202
    _assert_tags(images.tags(), repo, ["three", "two"])
    assert images.delete(second_digest).status == 202
    _assert_tags(images.tags(), repo, ["two"])
    assert images.delete("two").status == 202
    response = images.tags()
    _assert_tags(response, repo, [])
    assert response.header("Link") is None
    _assert_tags(images.tags("?n=2"), repo, [])


def test_tags_of_one_repository_only(images, repo):
    images.push("mine", images.image())
    other = Images(images.registry, f"{repo}/nested")
    other.push("theirs", other.image())
    _assert_tags(images.tags(), repo, ["mine"])
    _assert_tags(other.tags(), f"{repo}/nested", ["theirs"])


@pytest.mark.parametrize("name", ["Upper", "a//b", "-a", "a/"])
def test_invalid_repository_name(registry, name):
    assert_error(registry.request("GET", f"{name}/tags/list"), 400, "NAME_INVALID")


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE", "PATCH"])
def test_wrong_method(registry, repo, method):
    response = registry.request(method, f"{repo}/tags/list")
    assert_error(response, 405, "UNSUPPORTED")
    assert response.header("Allow") == "GET, HEAD"


def test_link_under_a_prefix(start_registry):
    """The Link header is a path below the configured C{http.prefix}."""
    server = start_registry(prefix="/mirror/")
    images = Images(server, "prefixed/repo")
    content = images.image()
    for tag in ("a", "b", "c"):
        images.push(tag, content)
    response = images.tags("?n=2")
    _assert_tags(response, "prefixed/repo", ["a", "b"])
    assert response.header("Link") == link_header("/mirror/v2/prefixed/repo/tags/list?last=b&n=2")
    link = response.header("Link")
    following = server.request("GET", link[1 : link.index(">")])
    _assert_tags(following, "prefixed/repo", ["c"])
