"""
Property-based tests (hypothesis) of what parses input from clients and
operators: manifests, repository names and manifest references, digests,
C{Range} and C{Content-Range}, C{n}/C{last} pagination, the upload state
token, and the configuration loader.

Each property says what a parser may answer for any input: a value that
keeps its promises, or its own error (a L{RegistryError} of the expected
code, a L{ConfigError} naming a key), never another exception, which in
production is a 500 or a traceback at start-up.  Where a specification
says exactly what to answer (Distribution's reference grammar, RFC 9110's
byte ranges) an oracle written from it is the reference.

Bounded for CI: the C{ci} profile runs 200 examples a property, derandomized
so that every run tries the same inputs.  C{HYPOTHESIS_PROFILE=long} explores
many more, at random.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from functools import partial
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from twisted.web.http_headers import Headers

from txregistry.config import Config, ConfigError, build_config, load_config
from txregistry.config.core import (
    AnyMapping,
    Duration,
    Ignored,
    MiddlewareList,
    OpenSchema,
    StringList,
    Unsupported,
)
from txregistry.config.health import _FILE_SCHEMA, _HTTP_SCHEMA, _TCP_SCHEMA
from txregistry.config.notifications import _ENDPOINT_SCHEMA
from txregistry.config.proxy import _REMOTE_SCHEMA
from txregistry.config.sections import SCHEMA
from txregistry.configured import read_config
from txregistry.digest import SUPPORTED_ALGORITHMS, Digest
from txregistry.errors import (
    BLOB_UPLOAD_INVALID,
    DIGEST_INVALID,
    MANIFEST_INVALID,
    MANIFEST_UNKNOWN,
    NAME_INVALID,
    PAGINATION_NUMBER_INVALID,
    RANGE_INVALID,
    SIZE_INVALID,
    TAG_INVALID,
    UNSUPPORTED,
    ErrorCode,
    RegistryError,
)
from txregistry.names import check_repository_name
from txregistry.registry.catalog import path_order
from txregistry.registry.manifest_formats import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    INDEX_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    SCHEMA1_TYPES,
    Manifest,
    parse_descriptor,
    parse_manifest,
)
from txregistry.registry.manifests import URLPolicy
from txregistry.resources.app import RequestContext
from txregistry.resources.blobs import _requested_range
from txregistry.resources.pagination import page_from, page_of
from txregistry.resources.routes import RequestHead, match_route
from txregistry.resources.upload_state import UploadState, UploadStateSigner
from txregistry.resources.uploads import _check_content_range
from txregistry.resources.urls import URLBuilder

settings.register_profile(
    "ci", max_examples=200, deadline=None, derandomize=True, database=None, print_blob=True
)
settings.register_profile("long", max_examples=5_000, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _outcome(call: Callable[[], Any], *codes: ErrorCode) -> Any:
    """
    What C{call} returns, or the L{RegistryError} it raises, which must be
    of one of C{codes} and render as the error document a client is sent.
    """
    try:
        return call()
    except RegistryError as error:
        assert error.error_code in codes, (error.error_code.code, error.detail)
        json.loads(error.body())
        return error


# Text as clients send it: UTF-8, so no lone surrogate (which st.text()
# draws now and then).
_CHARACTERS = st.characters(exclude_categories=["Cs"])

# Numbers as text: small, huge, with leading zeros, and longer than the
# 4300 digits int() converts.
_DIGITS = st.one_of(
    st.integers(0, 2**70).map(str),
    st.builds(lambda zeros, n: "0" * zeros + str(n), st.integers(1, 30), st.integers(0, 999)),
    st.builds(
        lambda digit, count: digit * count,
        st.sampled_from("0159"),
        st.integers(1, 30) | st.integers(4290, 6000),
    ),
)


# -- manifests ----------------------------------------------------------------------


def _hex(length: int) -> st.SearchStrategy[str]:
    return st.text("0123456789abcdef", min_size=length, max_size=length)


_DIGESTS = st.sampled_from(sorted(SUPPORTED_ALGORITHMS)).flatmap(
    lambda algorithm: _hex(SUPPORTED_ALGORITHMS[algorithm]).map(lambda hex: f"{algorithm}:{hex}")
)
_MEDIA_TYPES = st.sampled_from(
    [
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        OCI_MANIFEST,
        DOCKER_MANIFEST,
    ]
) | st.text(_CHARACTERS, min_size=1, max_size=30)
_TEXT = st.text(_CHARACTERS, max_size=20)
# Whatever JSON strings can hold, lone surrogates (\\ud800) included.
_JSON_TEXT = st.text(_CHARACTERS | st.characters(categories=["Cs"]), max_size=20)
_ANNOTATIONS = st.dictionaries(_TEXT, _TEXT, max_size=3)


@st.composite
def _descriptors(draw: st.DrawFn) -> dict:
    """A valid descriptor, as a JSON object."""
    document: dict[str, Any] = {
        "mediaType": draw(_MEDIA_TYPES),
        "digest": draw(_DIGESTS),
        "size": draw(st.integers(0, 2**63 - 1)),
    }
    optional = {
        "urls": st.lists(_TEXT, max_size=2),
        "platform": st.fixed_dictionaries({"os": _TEXT, "architecture": _TEXT}),
        "artifactType": _TEXT,
        "annotations": _ANNOTATIONS,
    }
    for key in draw(st.sets(st.sampled_from(sorted(optional)))):
        document[key] = draw(optional[key])
    return document


@st.composite
def _manifests(draw: st.DrawFn) -> tuple[dict, str, str | None]:
    """A valid manifest of each kind: its JSON, its media type, the Content-Type to push it with."""
    media_type = draw(
        st.sampled_from([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])
    )
    document: dict[str, Any] = {"schemaVersion": 2}
    if media_type in (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST) or draw(st.booleans()):
        document["mediaType"] = media_type
    if media_type in INDEX_TYPES:
        document["manifests"] = draw(st.lists(_descriptors(), max_size=3))
    else:
        document["config"] = draw(_descriptors())
        document["layers"] = draw(st.lists(_descriptors(), max_size=3))
    if draw(st.booleans()):
        document["subject"] = draw(_descriptors())
    if draw(st.booleans()):
        document["artifactType"] = draw(st.text(_CHARACTERS, min_size=1, max_size=20))
    if draw(st.booleans()):
        document["annotations"] = draw(_ANNOTATIONS)
    content_type = draw(st.sampled_from([None, media_type]))
    return document, media_type, content_type


_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([-1, 2, 2**63, 2**64, 10**400]),
    st.floats(),
    _JSON_TEXT,
    _DIGESTS,
    _MEDIA_TYPES,
)
_MANIFEST_KEYS = st.sampled_from(
    [
        "schemaVersion",
        "mediaType",
        "config",
        "layers",
        "manifests",
        "subject",
        "artifactType",
        "annotations",
        "digest",
        "size",
        "urls",
        "platform",
    ]
)
_JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(_MANIFEST_KEYS | _JSON_TEXT, children, max_size=5)
    ),
    max_leaves=12,
)
_CONTENT_TYPES = st.sampled_from(
    [
        None,
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
        "application/json",
        *sorted(SCHEMA1_TYPES),
    ]
) | st.text(max_size=20)


@st.composite
def _mutated_manifests(draw: st.DrawFn) -> Any:
    """A valid manifest with one value somewhere in it replaced by any JSON value."""
    document = draw(_manifests())[0]
    parent: Any = document
    while True:
        keys = list(parent) if isinstance(parent, dict) else list(range(len(parent)))
        if not keys:
            return document
        key = draw(st.sampled_from(keys))
        child = parent[key]
        if isinstance(child, (dict, list)) and child and draw(st.booleans()):
            parent = child
            continue
        parent[key] = draw(_JSON_VALUES)
        return document


def _assert_same_descriptor(parsed: Any, document: dict) -> None:
    assert parsed.media_type == document["mediaType"]
    assert str(parsed.digest) == document["digest"]
    assert parsed.size == document["size"]
    assert parsed.urls == tuple(document.get("urls") or ())
    assert parsed.platform == document.get("platform")
    assert parsed.artifact_type == document.get("artifactType")
    assert parsed.annotations == document.get("annotations")


def _assert_describable(manifest: Manifest) -> None:
    """
    What is made of an accepted manifest encodes: its descriptors as the
    referrers list and manifest events carry them (the events with orjson).
    """
    children = (*manifest.manifests, *manifest.layers)
    if manifest.config is not None:
        children = (manifest.config, *children)
    references = [child.to_json() for child in children]
    orjson.dumps({"references": references, "referrer": manifest.descriptor().to_json()})
    json.dumps(references)
    for child, document in zip(children, references, strict=True):
        again = parse_descriptor(document, "again")
        assert (again.media_type, again.digest, again.size) == (
            child.media_type,
            child.digest,
            child.size,
        )
        assert again.artifact_type == (child.artifact_type or None)
        assert again.annotations == (child.annotations or None)


@given(_manifests(), st.booleans())
def test_valid_manifests_parse(generated: tuple[dict, str, str | None], ascii_only: bool) -> None:
    """Every valid manifest of each kind parses, to what it says, and describes itself."""
    document, media_type, content_type = generated
    content = json.dumps(document, ensure_ascii=ascii_only).encode("utf-8")
    manifest = parse_manifest(content, content_type)
    assert manifest.media_type == media_type
    assert manifest.content == content
    assert manifest.digest == Digest.of(content)
    assert Digest.parse(str(manifest.digest)) == manifest.digest
    if media_type in INDEX_TYPES:
        assert manifest.config is None and manifest.layers == ()
        for parsed, entry in zip(manifest.manifests, document["manifests"], strict=True):
            _assert_same_descriptor(parsed, entry)
    else:
        assert manifest.manifests == ()
        assert manifest.config is not None
        _assert_same_descriptor(manifest.config, document["config"])
        for parsed, entry in zip(manifest.layers, document["layers"], strict=True):
            _assert_same_descriptor(parsed, entry)
    if "subject" in document:
        assert manifest.subject is not None
        _assert_same_descriptor(manifest.subject, document["subject"])
    assert manifest.annotations == (document.get("annotations") or {})
    _assert_describable(manifest)


def _parse_or_refuse(content: bytes, content_type: str | None) -> None:
    manifest = _outcome(lambda: parse_manifest(content, content_type), MANIFEST_INVALID)
    if isinstance(manifest, Manifest):
        _assert_describable(manifest)


@given(_JSON_VALUES | _mutated_manifests(), _CONTENT_TYPES)
def test_any_json_manifest(document: Any, content_type: str | None) -> None:
    """Any JSON value is a manifest that describes itself, or MANIFEST_INVALID."""
    _parse_or_refuse(json.dumps(document).encode("ascii"), content_type)


# Values of each field's type that are not what a valid descriptor holds.
_ODD_TEXT = st.text(min_size=1, max_size=8) | st.builds(
    lambda before, surrogate, after: before + surrogate + after,
    st.text(max_size=3),
    st.characters(categories=["Cs"]),
    st.text(max_size=3),
)
_ODD_FIELDS = {
    "mediaType": _ODD_TEXT,
    "digest": _ODD_TEXT,
    "size": st.sampled_from([-1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70, 10**400]),
    "urls": st.lists(_ODD_TEXT, min_size=1, max_size=2),
    "platform": st.dictionaries(_ODD_TEXT, _JSON_SCALARS, min_size=1, max_size=2),
    "artifactType": _ODD_TEXT,
    "annotations": st.dictionaries(_ODD_TEXT, _ODD_TEXT, min_size=1, max_size=2),
}


@st.composite
def _any_descriptors(draw: st.DrawFn) -> dict:
    """A valid descriptor with one or two of its fields given odd values of their type."""
    document = draw(_descriptors())
    for key in draw(st.sets(st.sampled_from(sorted(_ODD_FIELDS)), min_size=1, max_size=2)):
        document[key] = draw(_ODD_FIELDS[key])
    return document


@given(
    _any_descriptors(),
    st.lists(_descriptors(), min_size=2, max_size=3),
    st.integers(0, 2),
    st.sampled_from([OCI_MANIFEST, OCI_INDEX]),
)
def test_any_descriptors(odd: dict, descriptors: list[dict], where: int, media_type: str) -> None:
    """A manifest with an odd descriptor describes itself, or is MANIFEST_INVALID."""
    descriptors.insert(where, odd)
    config, subject, *children = descriptors
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type, "subject": subject}
    if media_type == OCI_INDEX:
        document["manifests"] = children
    else:
        document.update(config=config, layers=children)
    _parse_or_refuse(json.dumps(document).encode("ascii"), None)


@given(
    st.one_of(
        st.binary(max_size=200),
        _JSON_VALUES.map(lambda value: json.dumps(value).encode("utf-16")),
        # Nesting deeper than any parser recurses.
        st.builds(
            lambda opener, depth: opener * depth,
            st.sampled_from([b"[", b'{"config":', b'{"schemaVersion":2,"annotations":']),
            st.integers(1, 200_000),
        ),
        st.builds(lambda digits: b'{"schemaVersion":' + digits.encode() + b"}", _DIGITS),
    ),
    _CONTENT_TYPES,
)
def test_any_bytes_manifest(content: bytes, content_type: str | None) -> None:
    """Any bytes are a manifest, or MANIFEST_INVALID."""
    _parse_or_refuse(content, content_type)


# -- digests, names, references -------------------------------------------------------

# go-digest's grammar, and the encoding of each algorithm it verifies.
_DIGEST_GRAMMAR = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"
_VERIFIABLE_DIGEST = re.compile(
    "|".join(
        f"{algorithm}:[a-f0-9]{{{length}}}" for algorithm, length in SUPPORTED_ALGORITHMS.items()
    )
)


@given(st.text() | st.from_regex(_DIGEST_GRAMMAR, fullmatch=True) | _DIGESTS)
def test_digest_parse(text: str) -> None:
    """A digest we can verify parses and prints as it was; anything else is DIGEST_INVALID."""
    digest = _outcome(lambda: Digest.parse(text), DIGEST_INVALID)
    if _VERIFIABLE_DIGEST.fullmatch(text):
        assert isinstance(digest, Digest) and str(digest) == text
        assert digest.hasher().name == digest.algorithm
    else:
        assert isinstance(digest, RegistryError)


# Distribution's reference grammar (distribution/reference, regexp.go), as
# the oracle: anchoredNameRegexp.
_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_OPTIONAL_PORT = r"(?::[0-9]+)?"
_IPV6_ADDRESS = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = rf"{_DOMAIN_NAME_COMPONENT}(?:\.{_DOMAIN_NAME_COMPONENT})*"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6_ADDRESS})"
_DOMAIN_AND_PORT = _HOST + _OPTIONAL_PORT
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
DISTRIBUTION_NAME = re.compile(rf"(?:{_DOMAIN_AND_PORT}/)?{_REMOTE_NAME}")
# Go's \w is ASCII.
DISTRIBUTION_TAG = re.compile(r"[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}")


def _legal_name(name: str) -> bool:
    """
    The oracle: Distribution's grammar, at most 255 characters in all (its
    NameTotalLengthMax), and, since a registry's own repositories carry no
    host, no port and no bracketed IPv6 host: nothing a storage path cannot
    hold.
    """
    return (
        DISTRIBUTION_NAME.fullmatch(name) is not None
        and len(name) <= 255
        and ":" not in name
        and "[" not in name
    )


# Built rather than drawn from the regex, which costs ten times as much.
_PATH_COMPONENTS = st.builds(
    lambda first, rest: first + "".join(separator + part for separator, part in rest),
    st.text("az09", min_size=1, max_size=4),
    st.lists(
        st.tuples(
            st.sampled_from([".", "_", "__", "-", "--", "---"]),
            st.text("az09", min_size=1, max_size=3),
        ),
        max_size=2,
    ),
)
_DOMAINS = st.sampled_from(
    [
        "",
        "registry.example/",
        "Registry.Example/",
        "a-b.c9/",
        "localhost:5000/",
        "[::1]:5000/",
        "[abcd]/",
    ]
)
_NAMES = st.one_of(
    st.builds(
        lambda domain, components: domain + "/".join(components),
        _DOMAINS,
        st.lists(_PATH_COMPONENTS, min_size=1, max_size=5)
        | st.lists(_PATH_COMPONENTS, min_size=40, max_size=90),
    ),
    st.text("abcxyzAZ09._-/:[]", max_size=40),
    st.text(max_size=20),
)


@given(_NAMES)
def test_repository_names(name: str) -> None:
    """L{check_repository_name} accepts exactly the names of Distribution's grammar."""
    checked = _outcome(lambda: check_repository_name(name), NAME_INVALID)
    assert (checked == name) is _legal_name(name), checked


@given(_NAMES, _DIGESTS)
def test_names_in_routes(name: str, digest: str) -> None:
    """A route's name is the whole name in the path: refused exactly when illegal."""
    for path, method in [
        (f"{name}/tags/list", "GET"),
        (f"{name}/blobs/{digest}", "HEAD"),
        (f"{name}/manifests/latest", "PUT"),
        (f"{name}/blobs/uploads/", "POST"),
    ]:
        match = _outcome(partial(match_route, path, method), NAME_INVALID, UNSUPPORTED)
        if not name:
            assert isinstance(match, RegistryError) and match.status == 404
        elif _legal_name(name):
            assert match.name == name, path
        else:
            assert match.error_code is NAME_INVALID, path


@given(
    st.text(max_size=140)
    | st.from_regex(DISTRIBUTION_TAG, fullmatch=True)
    | st.from_regex(_DIGEST_GRAMMAR, fullmatch=True),
    st.sampled_from(["GET", "HEAD", "PUT", "DELETE"]),
)
def test_manifest_references(reference: str, method: str) -> None:
    """A manifest reference is a tag of Distribution's grammar, a digest, or refused."""
    assume(reference and "/" not in reference)
    match = _outcome(
        lambda: match_route(f"library/alpine/manifests/{reference}", method),
        TAG_INVALID,
        MANIFEST_UNKNOWN,
        DIGEST_INVALID,
    )
    if ":" in reference:
        assert (not isinstance(match, RegistryError)) is bool(
            _VERIFIABLE_DIGEST.fullmatch(reference)
        )
        if not isinstance(match, RegistryError):
            assert str(match.digest) == reference and match.tag is None
    elif DISTRIBUTION_TAG.fullmatch(reference):
        assert match.tag == reference and match.digest is None
    else:
        assert match.error_code is (MANIFEST_UNKNOWN if method in ("GET", "HEAD") else TAG_INVALID)


_PATH_PARTS = (
    st.sampled_from(
        [
            "",
            "/",
            "a",
            "foo/bar",
            "blobs",
            "uploads",
            "manifests",
            "tags",
            "list",
            "referrers",
            "_catalog",
        ]
    )
    | _DIGESTS
    | st.text(max_size=8)
)


@given(
    st.lists(_PATH_PARTS, max_size=8).map("/".join),
    st.sampled_from(["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"]),
)
def test_any_path(path: str, method: str) -> None:
    """Any path below /v2/ finds a route, or is refused with a client error."""
    _outcome(
        lambda: match_route(path, method),
        NAME_INVALID,
        DIGEST_INVALID,
        TAG_INVALID,
        MANIFEST_UNKNOWN,
        UNSUPPORTED,
    )


@given(
    st.sampled_from([b"GET", b"PUT", b"get"]),
    st.binary(max_size=60)
    | st.builds(
        lambda start, pieces: start + b"".join(pieces),
        st.sampled_from([b"/", b"//", b"http://", b"/v2/"]),
        st.lists(
            st.sampled_from(
                [b"/", b"v2", b"[", b"]", b"?", b"#", b"%", b"%zz", b"\xff", b":", b"a", b"=&"]
            ),
            max_size=10,
        ),
    ),
    st.sampled_from(["/", "/registry/"]),
)
def test_request_head_parse(method: bytes, uri: bytes, prefix: str) -> None:
    """Any request target parses into a head: the path below /v2/, or none."""
    head = RequestHead.parse(method, uri, Headers(), prefix)
    assert head.path is None or isinstance(head.path, str)


# -- Range and Content-Range ---------------------------------------------------------

# Header values as they reach a resource: Latin-1, no line breaks.
_HEADER_TEXT = st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=30)
_SIZES = st.integers(0, 2**63 - 1) | st.integers(0, 300)


@given(
    _HEADER_TEXT
    | st.builds(
        lambda unit, first, last: f"{unit}={first}-{last}",
        st.sampled_from(["bytes", "BYTES", "items"]),
        _DIGITS | st.just(""),
        _DIGITS | st.just(""),
    ),
    _SIZES,
)
def test_any_range(header: str, size: int) -> None:
    """Any Range is ignored, a range inside the blob, or 416 saying the size."""
    answer = _outcome(lambda: _requested_range(header, size), RANGE_INVALID)
    if isinstance(answer, RegistryError):
        assert answer.status == 416
        assert answer.headers == {"Content-Range": f"bytes */{size}"}
    elif answer is not None:
        start, end = answer
        assert 0 <= start <= end < size


def _number(digits: str | None) -> int | None:
    """The value of C{digits}; past what int() reads, a number as far past any size."""
    if digits is None:
        return None
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) < 4000 else 10**4000


def _rfc9110_range(first: int | None, last: int | None, size: int) -> Any:
    """
    RFC 9110 (14.1.2, 14.1.1) on a single byte range: the inclusive range
    to send, L{None} for the whole representation, C{416} when it cannot be
    satisfied, or C{"either"} where a server may ignore or refuse it.
    """
    if first is None:
        assert last is not None
        if last == 0:
            return 416
        if size == 0:
            # Satisfiable, but no byte can be sent: the whole, empty, blob.
            return None
        return max(size - last, 0), size - 1
    if last is not None and last < first:
        return "either"  # an invalid range-spec
    if first >= size:
        return 416
    return first, size - 1 if last is None else min(last, size - 1)


@given(
    st.sampled_from(["bytes", "Bytes", "BYTES"]),
    _DIGITS | st.none(),
    _DIGITS | st.none(),
    st.sampled_from(["", " ", "\t"]),
    _SIZES,
)
def test_single_range(
    unit: str, first: str | None, last: str | None, space: str, size: int
) -> None:
    """A well-formed single range is answered as RFC 9110 says."""
    assume(first is not None or last is not None)
    header = f"{space}{unit}={first or ''}-{last or ''}{space}"
    answer = _outcome(lambda: _requested_range(header, size), RANGE_INVALID)
    expected = _rfc9110_range(_number(first), _number(last), size)
    if isinstance(answer, RegistryError):
        assert expected in (416, "either"), header
    else:
        assert expected == answer or (expected == "either" and answer is None), header


def _upload_context(content_range: str | None, content_length: str | None) -> Any:
    """What L{_check_content_range} reads: the request's head, and what makes upload headers."""
    headers = Headers()
    if content_range is not None:
        headers.addRawHeader(b"Content-Range", content_range.encode("latin-1"))
    if content_length is not None:
        headers.addRawHeader(b"Content-Length", content_length.encode("ascii"))
    head = RequestHead.parse(b"PATCH", b"/v2/foo/blobs/uploads/abc", headers, "/")
    return SimpleNamespace(
        head=head,
        app=SimpleNamespace(signer=UploadStateSigner(b"secret")),
        urls=URLBuilder(head, None, "/", relative=True),
    )


def _session(size: int) -> Any:
    return SimpleNamespace(repository="foo", upload_id="abc", size=size, started_at="now")


# Content-Length as Twisted lets it through: ASCII digits int() reads.
_CONTENT_LENGTHS = st.none() | st.integers(0, 2**64).map(str)


@given(
    _HEADER_TEXT
    | st.builds(
        lambda prefix, first, last, total: f"{prefix}{first}-{last}{total}",
        st.sampled_from(["", "bytes ", "bytes=", "items "]),
        _DIGITS,
        _DIGITS,
        st.sampled_from(["", "/*", "/100", "/x"]),
    ),
    _CONTENT_LENGTHS,
    _SIZES,
)
def test_any_content_range(header: str, length: str | None, size: int) -> None:
    """Any Content-Range of a chunk is accepted, or refused with 416 or SIZE_INVALID."""
    answer = _outcome(
        lambda: _check_content_range(_upload_context(header, length), _session(size)),
        RANGE_INVALID,
        SIZE_INVALID,
    )
    if isinstance(answer, RegistryError) and answer.error_code is RANGE_INVALID:
        assert answer.status == 416
        assert answer.headers["Range"] == f"0-{max(size - 1, 0)}"


@given(
    st.integers(0, 2**63 - 1),
    st.integers(0, 2**40),
    st.sampled_from(["", "bytes ", "bytes="]),
    st.sampled_from(["", "/*", "/12345"]),
    st.booleans(),
    st.integers(-3, 3),
)
def test_content_range(
    start: int, length: int, prefix: str, total: str, with_length: bool, shift: int
) -> None:
    """A chunk must start where the upload ends, and say its length as Content-Length does."""
    end = start + length
    header = f"{prefix}{start}-{end}{total}"
    size = start + shift
    assume(size >= 0)
    content_length = str(length + 1) if with_length else None
    answer = _outcome(
        lambda: _check_content_range(_upload_context(header, content_length), _session(size)),
        RANGE_INVALID,
    )
    assert (answer is None) is (shift == 0)


# -- pagination ------------------------------------------------------------------------


def _list_context(target: str) -> RequestContext:
    """A C{GET} of C{target}, as L{page_of} reads it: its head, and the URLs it writes."""
    head = RequestHead.parse(b"GET", target.encode("ascii"), Headers(), "/")
    urls = URLBuilder(head, None, "/", relative=True)
    return RequestContext(app=None, request=None, head=head, match=None, urls=urls)


_LINK = re.compile(r'<(?P<target>[^>]*)>; rel="next"')
# Text a tag or a repository name may be, and more: any text but the empty one.
_ITEMS = st.text(_CHARACTERS, min_size=1, max_size=6) | st.lists(
    st.text("ab-", min_size=1, max_size=2), min_size=1, max_size=3
).map("/".join)
_ORDERS: list[Callable[[str], Any]] = [lambda item: item, path_order]


@given(
    st.lists(_ITEMS, max_size=30),
    st.integers(1, 35),
    st.sampled_from(_ORDERS),
    st.integers(1, 60) | st.none(),
)
def test_walking_pages(
    raw: list[str], count: int, order: Callable[[str], Any], maximum: int | None
) -> None:
    """Following the Link headers from the first page visits every item once, in order."""
    items = sorted(set(raw), key=order)
    assume(maximum is None or count <= maximum)
    context = _list_context("/v2/foo/tags/list?" + urlencode({"n": count}))
    seen: list[str] = []
    requests = 0
    while True:
        requests += 1
        page, headers = page_of(
            context, items, "foo/tags/list", default=None, maximum=maximum, order=order
        )
        assert 0 < len(page) <= count or (not items and not page)
        seen += page
        link = headers.get("Link")
        if link is None:
            break
        found = _LINK.fullmatch(link)
        assert found is not None, link
        target = found.group("target")
        assert target.startswith("/v2/foo/tags/list?")
        context = _list_context(target)
    assert seen == items
    assert requests == max(1, -(-len(items) // count))


@given(
    st.lists(_ITEMS, max_size=20),
    st.one_of(
        st.none(),
        _DIGITS,
        st.text(_CHARACTERS, max_size=5),
        st.sampled_from(["-1", "+1", " 1", "²", "1.0"]),
    ),
    st.none() | _ITEMS | st.text(_CHARACTERS, max_size=5),
    st.sampled_from(_ORDERS),
    st.none() | st.integers(1, 50),
    st.none() | st.integers(0, 100),
)
def test_any_page_request(
    raw: list[str],
    count: str | None,
    last: str | None,
    order: Callable[[str], Any],
    maximum: int | None,
    default: int | None,
) -> None:
    """Any n and last give the next run of items after last, or PAGINATION_NUMBER_INVALID."""
    items = sorted(set(raw), key=order)
    query = {key: value for key, value in {"n": count, "last": last}.items() if value is not None}
    context = _list_context("/v2/foo/tags/list?" + urlencode(query))
    answer = _outcome(
        lambda: page_of(
            context, items, "foo/tags/list", default=default, maximum=maximum, order=order
        ),
        PAGINATION_NUMBER_INVALID,
    )
    if isinstance(answer, RegistryError):
        return
    page, headers = answer
    after = [item for item in items if not last or order(item) > order(last)]
    assert page == after[: len(page)]
    assert ("Link" in headers) is (0 < len(page) < len(after))


def _finished(coroutine: Any) -> Any:
    """The result of a coroutine that never waits (its reader answers at once)."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the coroutine waited")


@given(
    st.lists(_ITEMS, max_size=20),
    st.none() | _DIGITS | st.sampled_from(["-1", "x", ""]),
    st.none() | _ITEMS | st.text(_CHARACTERS, max_size=5),
    st.sampled_from(_ORDERS),
    st.none() | st.integers(1, 50),
    st.none() | st.integers(0, 100),
    st.booleans(),
)
def test_pages_read_from_storage(
    raw: list[str],
    count: str | None,
    last: str | None,
    order: Callable[[str], Any],
    maximum: int | None,
    default: int | None,
    whole: bool,
) -> None:
    """
    A page read a page at a time (the fewest items a reader may return, or
    the whole list, as a pull-through cache's tags) is the page cut from
    the whole list, with the same C{Link}; the error for an invalid n too.
    """
    items = sorted(set(raw), key=order)
    query = {key: value for key, value in {"n": count, "last": last}.items() if value is not None}
    context = _list_context("/v2/foo/tags/list?" + urlencode(query))
    reads: list[tuple[str | None, int | None]] = []

    async def read(after: str | None, limit: int | None) -> list[str]:
        reads.append((after, limit))
        if whole:
            return items
        following = [item for item in items if after is None or order(item) > order(after)]
        return following[:limit]

    cut = _outcome(
        lambda: page_of(
            context, items, "foo/tags/list", default=default, maximum=maximum, order=order
        ),
        PAGINATION_NUMBER_INVALID,
    )
    paged = _outcome(
        lambda: _finished(
            page_from(context, read, "foo/tags/list", default=default, maximum=maximum, order=order)
        ),
        PAGINATION_NUMBER_INVALID,
    )
    if isinstance(cut, RegistryError):
        assert isinstance(paged, RegistryError)
        assert paged.detail == cut.detail
        return
    assert paged == cut
    # One read, from last on, of one item more than the page at most.
    [(after, limit)] = reads
    assert after == (last or None)
    assert limit is None or len(cut[0]) < limit


# -- the upload state token --------------------------------------------------------------


_SIGNER = UploadStateSigner(b"fuzzing")


@given(st.builds(UploadState, st.text(), st.text(), st.integers(), st.text()))
def test_upload_state_round_trip(state: UploadState) -> None:
    """A packed state unpacks to itself."""
    assert _SIGNER.unpack(_SIGNER.pack(state)) == state


@given(st.text(max_size=200) | st.binary(max_size=150).map(lambda raw: raw.hex()))
def test_any_upload_state(token: str) -> None:
    """Any _state is a state this registry signed, or BLOB_UPLOAD_INVALID."""
    _outcome(lambda: _SIGNER.unpack(token), BLOB_UPLOAD_INVALID)


# -- the configuration loader ------------------------------------------------------------

_DRIVERS = {"filesystem": None, "inmemory": None, "s3": None}
_CACHES = {"inmemory": None, "redis": None}

# Strings for any key, right and wrong: whole values some key takes, and
# values made of the pieces addresses, URLs, durations and patterns are made of.
_CONFIG_WORDS = [
    "",
    "0.1",
    "tcp",
    "unix",
    "info",
    "json",
    "inmemory",
    "redis",
    "webhook",
    "pull",
    "tls1.2",
    "TLS_AES_128_GCM_SHA256",
    "ghcr",
    "/metrics",
]
_CONFIG_PIECES = [
    "a",
    "A",
    "/",
    ":",
    "5000",
    "0",
    "9" * 5000,
    "[",
    "]",
    "::1",
    "localhost",
    "http://",
    "https://",
    ".",
    "-",
    "10s",
    "1.5h",
    "(",
    ")",
    "(?i)",
    "{4294967296}",
    "*",
    "\x00",
]
_CONFIG_STRINGS = st.one_of(
    st.sampled_from(_CONFIG_WORDS),
    st.lists(st.sampled_from(_CONFIG_PIECES), min_size=1, max_size=4).map("".join),
    st.text(max_size=12),
)
_CONFIG_INTEGERS = st.integers() | st.sampled_from([0, -1, 65536, 2**63, 10**400, 10**4299])
# Strings of the grammar some keys have, by the key's name.
_ADDRESSES = st.builds(
    lambda host, colon, port: host + colon + port,
    st.sampled_from(["", "a", "redis", "localhost", "[::1]", "[::1", "::1", "a b", "[]"]),
    st.sampled_from(["", ":"]),
    _DIGITS | st.sampled_from(["", "port", "-1"]),
)
_URLS = st.builds(
    lambda scheme, host, path: scheme + host + path,
    st.sampled_from(["", "http://", "https://", "ftp://", "http:"]),
    _ADDRESSES,
    st.sampled_from(["", "/", "/v2/", "?q", "#f"]),
)
_PATTERNS = st.lists(
    st.sampled_from(
        ["a", "^https://", ".", "*", "|", "(", ")", "(?i)", "[", "]", "\\", "{4294967296}"]
    ),
    min_size=1,
    max_size=4,
).map("".join)
_KEY_STRINGS = {
    "addr": _ADDRESSES,
    "addrs": _ADDRESSES,
    "url": _URLS,
    "uri": _URLS,
    "remoteurl": _URLS,
    "host": _URLS,
    "allow": _PATTERNS,
    "deny": _PATTERNS,
}
_DURATIONS = st.one_of(
    st.from_regex(r"(?:\d{1,3}(?:\.\d{1,2})?(?:ns|us|µs|ms|s|m|h)){1,3}", fullmatch=True),
    _CONFIG_INTEGERS,
    st.just("9" * 400 + "h"),
)
_YAML_VALUES = st.recursive(
    st.none() | st.booleans() | _CONFIG_INTEGERS | st.floats() | _CONFIG_STRINGS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(_CONFIG_STRINGS | st.integers() | st.none(), children, max_size=3)
    ),
    max_leaves=8,
)
_MIDDLEWARE = st.lists(
    st.fixed_dictionaries(
        {}, optional={"name": _CONFIG_STRINGS, "options": _YAML_VALUES, "disabled": st.booleans()}
    )
    | _YAML_VALUES,
    max_size=3,
)
# The lists a section's builder checks entry by entry.
_ENTRY_LISTS: Mapping[str, Mapping[str, Any]] = {
    "notifications": {"endpoints": _ENDPOINT_SCHEMA},
    "health": {"file": _FILE_SCHEMA, "http": _HTTP_SCHEMA, "tcp": _TCP_SCHEMA},
    "proxy": {"remotes": _REMOTE_SCHEMA},
}


def _shaped(
    kind: Any,
    lists: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    wrong: bool = True,
    key: str = "",
) -> st.SearchStrategy[Any]:
    """
    Values for C{key}, of C{kind} (see L{txregistry.config.core}): of that
    kind, with edge values and nothing (null) among them, which get past the
    schema's check to the section's builder; with C{wrong}, now and then
    anything.
    """
    if isinstance(kind, (Unsupported, Ignored)):
        return _YAML_VALUES
    if isinstance(kind, tuple):
        return st.one_of([_shaped(one, wrong=wrong, key=key) for one in kind])
    if isinstance(kind, dict):
        keys = {
            name: _shaped(sub, wrong=wrong, key=name)
            for name, sub in kind.items()
            if wrong or not isinstance(sub, Unsupported)
        }
        for name, entry in (lists or {}).items():
            keys[name] = st.lists(_shaped(entry, wrong=wrong), max_size=3) | st.none()
        shaped = st.fixed_dictionaries({}, optional=keys)
        if kind is SCHEMA["storage"]:
            # Its unlisted keys name the driver.
            drivers = st.dictionaries(
                st.sampled_from(sorted(_DRIVERS)) | (_CONFIG_STRINGS if wrong else st.nothing()),
                st.none() | st.dictionaries(_CONFIG_STRINGS, _YAML_VALUES, max_size=2),
                min_size=0 if wrong else 1,
                max_size=2 if wrong else 1,
            )
            shaped = st.builds(lambda listed, more: {**more, **listed}, shaped, drivers)
        elif wrong and isinstance(kind, OpenSchema):
            mistakes = st.dictionaries(_CONFIG_STRINGS, _YAML_VALUES, max_size=1)
            shaped = st.builds(lambda listed, more: {**more, **listed}, shaped, mistakes)
        return st.one_of(shaped, shaped, st.none(), _YAML_VALUES) if wrong else shaped | st.none()
    strings = _KEY_STRINGS.get(key, _CONFIG_STRINGS)
    right = {
        str: strings,
        int: _CONFIG_INTEGERS,
        bool: st.booleans(),
        float: st.floats() | st.just(0.1),
        Duration: _DURATIONS,
        StringList: st.lists(strings, max_size=3),
        AnyMapping: st.dictionaries(_CONFIG_STRINGS, _YAML_VALUES, max_size=3),
        MiddlewareList: _MIDDLEWARE,
    }[kind]
    return st.one_of(right, right, st.none(), _YAML_VALUES) if wrong else right | st.none()


def _focused(key: str) -> st.SearchStrategy[dict[str, Any]]:
    """
    Documents whose other sections are right, with section C{key} of the
    right kinds: the documents that reach C{key}'s builder.
    """
    return st.fixed_dictionaries(
        {
            "version": st.just("0.1"),
            "storage": st.just({"inmemory": None}),
            key: _shaped(SCHEMA[key], _ENTRY_LISTS.get(key), wrong=False),
        }
    )


_DOCUMENTS = st.fixed_dictionaries(
    {"version": st.sampled_from(["0.1", 0.1])},
    optional={
        key: _shaped(kind, _ENTRY_LISTS.get(key))
        for key, kind in SCHEMA.items()
        if key != "version"
    },
)


def _assert_names_a_key(error: ConfigError) -> None:
    assert isinstance(error.key, str) and error.key
    assert str(error) == f"{error.key}: {error.problem}"


def _build_or_refuse(build: Callable[[], Config]) -> Config | None:
    """
    The configuration C{build} makes, with what the service makes of it
    alone; or L{None} for a L{ConfigError} naming a key.
    """
    try:
        config = build()
    except ConfigError as error:
        _assert_names_a_key(error)
        return None
    validation = config.validation
    URLPolicy.from_config(
        validation.disabled, list(validation.url_allow), list(validation.url_deny)
    )
    return config


@given(_DOCUMENTS, st.booleans())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_any_config_document(document: dict[str, Any], known: bool) -> None:
    """Any document loads, or is refused with a ConfigError naming a key."""
    _build_or_refuse(
        lambda: build_config(
            document, _DRIVERS if known else None, known_caches=_CACHES if known else None
        )
    )


@pytest.mark.parametrize("key", sorted(SCHEMA))
@given(data=st.data())
@settings(max_examples=max(50, settings.default.max_examples // 4))
def test_any_config_section(key: str, data: st.DataObject) -> None:
    """Any section whose keys have values of their kind builds, or is a ConfigError naming a key."""
    document = data.draw(_focused(key), label="document")
    _build_or_refuse(lambda: build_config(document, _DRIVERS, known_caches=_CACHES))


@given(_ADDRESSES)
def test_config_addresses(addr: str) -> None:
    """Any address, wherever one is given, is a host and port, or a ConfigError naming the key."""
    for section in (
        {"http": {"addr": addr}},
        {"http": {"debug": {"addr": addr}}},
        {"redis": {"addr": addr}},
        {"redis": {"addrs": [addr]}},
        {"health": {"tcp": [{"addr": addr}]}},
    ):
        document = {"version": "0.1", "storage": {"inmemory": None}, **section}
        _build_or_refuse(partial(build_config, document, _DRIVERS, known_caches=_CACHES))


@given(st.lists(_PATTERNS, max_size=3), st.lists(_PATTERNS, max_size=3), _URLS)
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_url_patterns(allow: list[str], deny: list[str], url: str) -> None:
    """Foreign layer URL patterns that load make a policy that answers for any URL."""
    document = {
        "version": "0.1",
        "storage": {"inmemory": None},
        "validation": {"manifests": {"urls": {"allow": allow, "deny": deny}}},
    }
    config = _build_or_refuse(lambda: build_config(document, _DRIVERS, known_caches=_CACHES))
    if config is not None:
        validation = config.validation
        policy = URLPolicy.from_config(False, list(validation.url_allow), list(validation.url_deny))
        assert policy.permits(url) in (True, False)


# YAML text, line by line: keys of the schema, and scalars PyYAML reads
# into something, fails to read, or fails to build a value of.
_YAML_KEYS = st.sampled_from(
    sorted(
        {key for kind in SCHEMA.values() if isinstance(kind, dict) for key in kind} | set(SCHEMA)
    )
)
_YAML_SCALARS = st.one_of(
    st.sampled_from(
        [
            "~",
            "0.1",
            "yes",
            "0x1F",
            "1_000",
            "1:20",
            "1e400",
            ".nan",
            "2001-12-14",
            "2001-13-45",
            "2001-02-30 25:61:00",
            "!!int x",
            "!!float x",
            "!!bool x",
            "!!binary x",
            "!!timestamp x",
            "!!str 5",
            "!!set {a}",
            "!!omap [a]",
            "!!python/name:os.system",
            "&a 1",
            "*a",
            "[",
            "{",
            "'",
            '"\\x"',
            "|",
            "-",
            "? a",
        ]
    ),
    st.builds(
        lambda prefix, digits: prefix + digits,
        st.sampled_from(["", "0x", "0b", "-", "1:"]),
        _DIGITS,
    ),
    st.integers(1, 3000).map(lambda depth: "[" * depth + "]" * depth),
    _CONFIG_STRINGS,
)
_YAML_LINES = st.lists(
    st.builds(
        lambda indent, key, value: f"{'  ' * indent}{key}: {value}",
        st.integers(0, 3),
        _YAML_KEYS,
        _YAML_SCALARS | st.just(""),
    )
    | st.builds(
        lambda indent, value: f"{'  ' * indent}- {value}", st.integers(0, 3), _YAML_SCALARS
    ),
    max_size=8,
).map(lambda lines: "version: 0.1\n" + "\n".join(lines))
_ENVIRONMENTS = st.dictionaries(
    st.lists(_YAML_KEYS | st.text("abc_", max_size=4), min_size=1, max_size=4).map(
        lambda parts: "REGISTRY_" + "_".join(parts).upper()
    ),
    _YAML_SCALARS,
    max_size=2,
)


@given(
    _DOCUMENTS.map(lambda document: yaml.safe_dump(document)) | _YAML_LINES,
    _ENVIRONMENTS,
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_any_config_text(text: str, environ: dict[str, str]) -> None:
    """Any YAML text, with any REGISTRY_* overrides, loads or is a ConfigError naming a key."""
    _build_or_refuse(
        lambda: load_config(text, environ, known_drivers=_DRIVERS, known_caches=_CACHES)
    )


@given(
    st.binary(max_size=100)
    | _YAML_LINES.map(lambda text: text.encode("utf-8", "surrogatepass"))
    | _YAML_LINES.map(lambda text: (text + "\n# é").encode("latin-1", "replace"))
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_any_config_file(content: bytes) -> None:
    """Any file's bytes load, or are a ConfigError naming a key."""
    with tempfile.TemporaryDirectory(prefix="txregistry-fuzz-") as folder:
        path = os.path.join(folder, "config.yml")
        with open(path, "wb") as file:
            file.write(content)
        _build_or_refuse(lambda: read_config(path))
