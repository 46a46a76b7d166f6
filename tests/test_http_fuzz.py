"""
An HTTP-level fuzzer against one registry process on 127.0.0.1: random
methods, paths built from the v2 route grammar and then mutated, random
headers (some lying about the body's length) and bodies, mixed with valid
pushes so that the deeper paths (a real upload, a real manifest) are
reached.  Every request is sent as raw bytes on a socket of its own.

Seeded: the seed is printed, and C{FUZZ_SEED} replays a run.
C{FUZZ_REQUESTS} changes how many requests are sent.

Properties: no 5xx; every 4xx with a body (HEAD excepted) is OCI error
JSON with registered codes; the process stays alive; it logs no traceback
(the C{module_registry} fixture fails the module if it does).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import pytest

from conftest import Registry
from txregistry.errors import ERROR_CODES
from txregistry.testing.client import read_response_head, receive
from txregistry.testing.manifests import oci_image

REQUESTS = int(os.environ.get("FUZZ_REQUESTS", "3000"))
# Bounded: the run stops early rather than take longer than this.
TIME_LIMIT = 40.0
SOCKET_TIMEOUT = 10.0

METHODS = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"]
GARBAGE_METHODS = ["TRACE", "CONNECT", "PROPFIND", "get", "G3T", "X" * 300, "\u00e9", "PUT\tX", ""]


@dataclass
class Raw:
    """One raw request: what is sent, and whether an answer must come."""

    method: str
    target: str
    data: bytes
    # False when the request lies about its length or its syntax: the
    # server may close the connection without an answer.
    answer_expected: bool = True


@dataclass
class Answer:
    """A response, parsed from the bytes read."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class State:
    """What the valid operations made, for the fuzzed ones to aim at."""

    repos: list[str] = field(default_factory=lambda: ["fuzz/a", "fuzz/b", "library/c"])
    digests: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=lambda: ["latest", "v1"])
    locations: list[str] = field(default_factory=list)


# -- sending and reading ---------------------------------------------------------


def _read_answer(sock: socket.socket, method: str) -> Answer | None:
    """Read one response; L{None} if the connection closed before any."""
    status, headers, rest = read_response_head(sock)
    if status == 0:
        if rest:
            raise AssertionError(f"truncated response head: {rest[:500]!r}")
        return None
    if method == "HEAD" or status in (204, 304):
        return Answer(status, headers, b"")
    length = headers.get("content-length")
    if length is not None:
        while len(rest) < int(length):
            chunk = receive(sock)
            if not chunk:
                break
            rest += chunk
        return Answer(status, headers, rest[: int(length)])
    # No length: the body runs to the end of the connection.
    while chunk := receive(sock):
        rest += chunk
    return Answer(status, headers, rest)


def send_raw(port: int, raw: Raw) -> Answer | None:
    """Send C{raw} on a new connection and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
        try:
            sock.sendall(raw.data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if not raw.answer_expected:
            # The body is short of its length: say no more is coming.
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        return _read_answer(sock, raw.method)


def build(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    length: str | None = "exact",
) -> bytes:
    """
    A request's bytes.  C{length}: C{"exact"}, L{None} (no
    Content-Length) or the header's literal value.
    """
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    if length == "exact":
        lines.append(f"Content-Length: {len(body)}")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + body


# -- the grammar -------------------------------------------------------------------


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def fuzz_digest(rng: random.Random, state: State) -> str:
    """A digest, valid or one of many broken shapes."""
    choice = rng.randrange(16)
    if choice < 3 and state.digests:
        return rng.choice(state.digests)
    if choice == 3 and state.manifests:
        return rng.choice(state.manifests)
    shapes = [
        lambda: f"sha256:{_hex(rng, 64)}",
        lambda: f"sha512:{_hex(rng, 128)}",
        lambda: f"sha256:{_hex(rng, rng.randrange(0, 70))}",
        lambda: f"sha256:{_hex(rng, 64).upper()}",
        lambda: f"md5:{_hex(rng, 32)}",
        lambda: f"sha384:{_hex(rng, 96)}",
        lambda: "sha256:",
        lambda: ":",
        lambda: f"SHA256:{_hex(rng, 64)}",
        lambda: f"sha256+b64u:{'A' * 43}",
        lambda: f"a.b_c-d:{'x' * rng.randrange(1, 200)}",
        lambda: f"sha256:{_hex(rng, 64)}:{_hex(rng, 4)}",
    ]
    return rng.choice(shapes)()


def fuzz_name(rng: random.Random, state: State) -> str:
    """A repository name, valid or not."""
    choice = rng.randrange(12)
    if choice < 6:
        return rng.choice(state.repos)
    shapes = [
        lambda: "a" * rng.choice([1, 255, 256, 300, 2000]),
        lambda: "/".join("ab" for _ in range(rng.randrange(1, 200))),
        lambda: rng.choice(["A/b", "a//b", "-a", "a-", "a__b", "a...b", "a/.", "..", "a/../b"]),
        lambda: rng.choice(["_catalog", "v2", "blobs", "manifests/x", "tags", "uploads"]),
        lambda: "fuzz/" + "".join(rng.choice("ab._-/") for _ in range(rng.randrange(1, 30))),
        lambda: "\u00e9t\u00e9/\u2603",
    ]
    return rng.choice(shapes)()


def fuzz_reference(rng: random.Random, state: State) -> str:
    """A manifest reference: a tag or a digest, valid or not."""
    choice = rng.randrange(6)
    if choice == 0:
        return rng.choice(state.tags)
    if choice == 1:
        return fuzz_digest(rng, state)
    shapes = [
        lambda: "t" * rng.choice([1, 128, 129, 1000]),
        lambda: rng.choice([".x", "-x", "a b", "a%00b", "\u00e9", "latest\n", "*", "%", ""]),
        lambda: "".join(rng.choice("aZ09_.-") for _ in range(rng.randrange(1, 20))),
    ]
    return rng.choice(shapes)()


def fuzz_upload_id(rng: random.Random) -> str:
    """An upload id, plausible or not."""
    shapes = [
        lambda: f"{_hex(rng, 8)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 12)}",
        lambda: _hex(rng, rng.randrange(1, 80)),
        lambda: rng.choice(["..", ".", "_x", "a.b", "-", "x" * 1000, "%2e%2e"]),
    ]
    return rng.choice(shapes)()


def fuzz_query(rng: random.Random, state: State) -> str:
    """A query string: pagination, digest, mount, _state, garbage."""
    params: list[tuple[str, str]] = []
    odd_numbers = ["0", "-1", "1", "5", "99999999999999999999", "1e3", "0x10", " 3", "", "NaN"]
    for _ in range(rng.randrange(0, 4)):
        key = rng.choice(["n", "last", "digest", "mount", "from", "_state", "junk", "n"])
        if key == "n":
            value = rng.choice(odd_numbers)
        elif key == "last":
            value = rng.choice(["", "a", "zzzz", "\u00e9", "a" * 1000, "fuzz/a"])
        elif key in ("digest", "mount"):
            value = fuzz_digest(rng, state)
        elif key == "from":
            value = fuzz_name(rng, state)
        elif key == "_state":
            value = rng.choice(["", "x", "a.b", "eyJ9", "A" * 5000, "%%%", "a.b.c"])
        else:
            value = "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(0, 20)))
        params.append((key, value))
    if not params:
        return ""
    encoded = "&".join(f"{quote(k)}={quote(v, safe=':')}" for k, v in params)
    if rng.random() < 0.1:
        encoded += rng.choice(["&", "&&", "=", "&=x", "%", "%zz", ";a=b"])
    return "?" + encoded


def fuzz_path(rng: random.Random, state: State) -> str:
    """A path (below the root), built from the route grammar, then mutated."""
    name = fuzz_name(rng, state)
    routes = [
        lambda: "/v2/",
        lambda: "/v2",
        lambda: "/v2/_catalog",
        lambda: f"/v2/{name}/tags/list",
        lambda: f"/v2/{name}/manifests/{fuzz_reference(rng, state)}",
        lambda: f"/v2/{name}/referrers/{fuzz_digest(rng, state)}",
        lambda: f"/v2/{name}/blobs/{fuzz_digest(rng, state)}",
        lambda: f"/v2/{name}/blobs/uploads/",
        lambda: f"/v2/{name}/blobs/uploads/{fuzz_upload_id(rng)}",
        lambda: rng.choice(["/", "/v1/", "/debug/health", "/metrics", "*", "/v2/../v2/"]),
    ]
    if state.locations and rng.random() < 0.15:
        path = rng.choice(state.locations)
    else:
        path = rng.choice(routes)() + fuzz_query(rng, state)
    return mutate_path(rng, path)


def mutate_path(rng: random.Random, path: str) -> str:
    """Maybe one mutation of C{path}; the result is what goes on the wire."""
    mutation = rng.randrange(14)
    wire = quote(path, safe="/:?&=%;+@")
    if mutation == 0:
        return wire.replace("/", "%2F", rng.randrange(1, 4))
    if mutation == 1:
        index = rng.randrange(len(wire) + 1)
        return (
            wire[:index]
            + rng.choice(["%00", "%ff", "%", "%2", "%c3%28", "//", "/./", "/../"])
            + wire[index:]
        )
    if mutation == 2:
        return wire + "/" + "x" * rng.choice([100, 1000, 8000])
    if mutation == 3 and len(wire) > 2:
        index = rng.randrange(1, len(wire))
        return wire[:index] + wire[index + 1 :]
    if mutation == 4:
        return wire.upper()
    if mutation == 5:
        return "http://127.0.0.1" + wire
    return wire


HEADER_VALUES: dict[str, list[str]] = {
    "Content-Type": [
        "application/octet-stream",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/json",
        "text/plain; charset=\u00e9",
        "",
        ";;;",
    ],
    "Content-Range": [
        "0-0",
        "0-99",
        "5-3",
        "-1-5",
        "0-",
        "bytes 0-10/11",
        "a-b",
        "0-99999999999999999999",
        "",
    ],
    "Range": [
        "bytes=0-0",
        "bytes=5-",
        "bytes=-5",
        "bytes=9-1",
        "bytes=0-1,3-4",
        "bits=1-2",
        "bytes=99999999999999999999-",
    ],
    "Accept": [
        "*/*",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json, */*;q=0.1",
        "",
        "x/y;q=abc",
    ],
    "If-None-Match": ['"sha256:' + "0" * 64 + '"', "*", "", '"', 'W/"x"'],
    "Authorization": [
        "Basic !!!",
        "Basic " + "QQ==" * 3,
        "Bearer x.y.z",
        "Bearer",
        "Digest a=b",
        "\u00e9",
    ],
    "Transfer-Encoding": ["chunked", "gzip", "chunked, chunked"],
    "Expect": ["100-continue", "x"],
    "Docker-Content-Digest": ["sha256:" + "0" * 64, "nope"],
    "X-Forwarded-Proto": ["https", "gopher", ""],
    "X-Forwarded-Host": ["evil.example", "", "a" * 300],
}


def fuzz_headers(rng: random.Random, state: State) -> list[tuple[str, str]]:
    """Some headers from L{HEADER_VALUES}, plus odd ones."""
    headers: list[tuple[str, str]] = []
    for _ in range(rng.randrange(0, 5)):
        name = rng.choice(list(HEADER_VALUES))
        if name == "Transfer-Encoding":
            continue  # sent only with a matching body: see fuzz_request
        value = rng.choice(HEADER_VALUES[name])
        if name == "If-None-Match" and state.manifests and rng.random() < 0.5:
            value = f'"{rng.choice(state.manifests)}"'
        headers.append((name, value))
    if rng.random() < 0.05:
        headers.append(("X-" + "h" * rng.randrange(1, 50), "v" * rng.randrange(0, 2000)))
    return headers


def fuzz_manifest(rng: random.Random, state: State) -> bytes:
    """A JSON-ish manifest with random fields, or not JSON at all."""

    def descriptor() -> dict[str, object]:
        item: dict[str, object] = {}
        if rng.random() < 0.9:
            item["mediaType"] = rng.choice(HEADER_VALUES["Content-Type"] + [None, 3])
        if rng.random() < 0.9:
            item["digest"] = (
                fuzz_digest(rng, state) if rng.random() < 0.9 else rng.choice([None, [], 7])
            )
        if rng.random() < 0.9:
            item["size"] = rng.choice([0, 2, 1024, -1, 2**70, "12", None, 1.5])
        if rng.random() < 0.1:
            item["urls"] = rng.choice([["http://x"], "x", [1]])
        if rng.random() < 0.1:
            item["annotations"] = rng.choice([{"a": "b"}, {"a": 1}, [], None])
        if rng.random() < 0.1:
            item["platform"] = rng.choice([{"os": "linux", "architecture": "amd64"}, "x", None])
        return item

    document: dict[str, object] = {}
    if rng.random() < 0.9:
        document["schemaVersion"] = rng.choice([2, 2, 1, 3, "2", None, 2.0, -1])
    if rng.random() < 0.8:
        document["mediaType"] = rng.choice(HEADER_VALUES["Content-Type"] + [None, 5, {}])
    if rng.random() < 0.7:
        document["config"] = descriptor() if rng.random() < 0.9 else rng.choice([None, [], "x"])
    if rng.random() < 0.7:
        key = rng.choice(["layers", "manifests", "fsLayers", "blobs"])
        document[key] = (
            [descriptor() for _ in range(rng.randrange(0, 4))]
            if rng.random() < 0.9
            else rng.choice([None, {}, "x", [None]])
        )
    if rng.random() < 0.2:
        document["subject"] = descriptor() if rng.random() < 0.8 else rng.choice([None, "x", []])
    if rng.random() < 0.1:
        document["artifactType"] = rng.choice(["application/x", "", None, 1])
    if rng.random() < 0.1:
        document["annotations"] = rng.choice([{"a": "b"}, [], None, {"a": 1}])
    if rng.random() < 0.1:
        document["signatures"] = rng.choice([[], [{}], "x"])
    text = json.dumps(document).encode()
    cut = rng.randrange(10)
    if cut == 0:
        return text[: rng.randrange(len(text) + 1)]
    if cut == 1:
        return b"[" + text + b"]"
    if cut == 2:
        return text.replace(b'"', b"'", 1)
    return text


def fuzz_body(rng: random.Random, state: State, method: str, path: str) -> bytes:
    """A body: none, random bytes, or a manifest-ish document."""
    choice = rng.randrange(10)
    if choice < 3:
        return b""
    if "/manifests/" in path and choice < 8:
        return fuzz_manifest(rng, state)
    size = rng.choice([1, 2, 17, 100, 1000, 70_000])
    return rng.randbytes(size)


def fuzz_request(rng: random.Random, state: State) -> Raw:
    """One fuzzed request."""
    method = rng.choice(METHODS) if rng.random() < 0.93 else rng.choice(GARBAGE_METHODS)
    target = fuzz_path(rng, state)
    headers = fuzz_headers(rng, state)
    body = fuzz_body(rng, state, method, target)
    lie = rng.randrange(20)
    if lie == 0 and body:
        # Longer than the body: the server waits for bytes that never come.
        data = build(method, target, headers, body, str(len(body) + rng.randrange(1, 1000)))
        return Raw(method, target, data, answer_expected=False)
    if lie == 1 and body:
        # Shorter than the body: the rest may be read as the next request.
        data = build(method, target, headers, body, str(rng.randrange(len(body))))
        return Raw(method, target, data)
    if lie == 2:
        chunks = b"".join(
            f"{len(part):x}\r\n".encode() + part + b"\r\n"
            for part in (body[i : i + 500] for i in range(0, len(body), 500))
        )
        ending = rng.choice([b"0\r\n\r\n", b"0\r\n\r\n", b"zz\r\n", b""])
        data = build(
            method, target, [*headers, ("Transfer-Encoding", "chunked")], chunks + ending, None
        )
        return Raw(method, target, data, answer_expected=ending == b"0\r\n\r\n")
    if lie == 3:
        value = rng.choice(["-1", "abc", "1, 2", "99999999999999999999999", " 5", "0x10"])
        return Raw(
            method, target, build(method, target, headers, body, value), answer_expected=False
        )
    if lie == 4 and not body:
        return Raw(method, target, build(method, target, headers, body, None))
    valid_syntax = method not in GARBAGE_METHODS or method.isalpha()
    return Raw(method, target, build(method, target, headers, body), answer_expected=valid_syntax)


# -- valid operations --------------------------------------------------------------


def _request(
    port: int, method: str, target: str, headers: list[tuple[str, str]], body: bytes
) -> Answer:
    answer = send_raw(port, Raw(method, target, build(method, target, headers, body)))
    assert answer is not None, (method, target)
    return answer


def valid_operation(rng: random.Random, state: State, port: int) -> None:
    """A push of a blob, an upload begun or chunked, a manifest: the fuzz aims at them."""
    repo = rng.choice(state.repos)
    choice = rng.randrange(4)
    if choice == 0:
        data = rng.randbytes(rng.randrange(0, 5000))
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        answer = _request(port, "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", [], data)
        assert answer.status == 201, answer
        state.digests.append(digest)
    elif choice == 1:
        answer = _request(port, "POST", f"/v2/{repo}/blobs/uploads/", [], b"")
        assert answer.status == 202, answer
        location = answer.headers["location"]
        parts = urlsplit(location)
        state.locations.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    elif choice == 2 and state.locations:
        location = rng.choice(state.locations)
        data = rng.randbytes(rng.randrange(1, 3000))
        _request(port, "PATCH", location, [("Content-Type", "application/octet-stream")], data)
    else:
        config = b'{"architecture":"amd64","os":"linux"}'
        layer = rng.randbytes(100)
        pushed = []
        for blob in (config, layer):
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            _request(port, "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", [], blob)
            pushed.append((digest, len(blob)))
        manifest = json.dumps(oci_image(pushed[0], pushed[1:])).encode()
        tag = rng.choice(state.tags)
        answer = _request(
            port,
            "PUT",
            f"/v2/{repo}/manifests/{tag}",
            [("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
            manifest,
        )
        assert answer.status == 201, answer
        state.manifests.append("sha256:" + hashlib.sha256(manifest).hexdigest())
        state.digests.extend(digest for digest, _ in pushed)


# -- properties ----------------------------------------------------------------------


def check_answer(raw: Raw, answer: Answer | None) -> str | None:
    """What is wrong with C{answer} to C{raw}, or L{None}."""
    if answer is None:
        return None if not raw.answer_expected else "no answer"
    if answer.status >= 500:
        return f"status {answer.status}: {answer.body[:300]!r}"
    if 400 <= answer.status < 500 and raw.method != "HEAD" and answer.body:
        try:
            document = json.loads(answer.body)
            codes = [error["code"] for error in document["errors"]]
        except (ValueError, KeyError, TypeError):
            return f"status {answer.status}, not OCI error JSON: {answer.body[:300]!r}"
        unknown = [code for code in codes if code not in ERROR_CODES]
        if unknown or not codes:
            return f"status {answer.status}, unknown codes {codes}"
    return None


def test_fuzz(module_registry: Registry) -> None:
    """
    C{REQUESTS} fuzzed requests (one in ten a valid operation): none is
    answered with a 5xx or a 4xx that is not OCI error JSON, and the
    process lives on.
    """
    seed = int(os.environ.get("FUZZ_SEED", str(random.SystemRandom().randrange(2**32))))
    print(f"FUZZ_SEED={seed}")
    rng = random.Random(seed)
    state = State()
    port = module_registry.process.port
    problems: list[str] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + TIME_LIMIT
    sent = 0
    for index in range(REQUESTS):
        if time.monotonic() > deadline:
            break
        sent += 1
        if rng.random() < 0.1:
            valid_operation(rng, state, port)
            continue
        raw = fuzz_request(rng, state)
        try:
            answer = send_raw(port, raw)
        except TimeoutError:
            answer = None
            if raw.answer_expected:
                problems.append(f"#{index} timed out: {raw.data[:300]!r}")
                continue
        if answer is not None:
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
        problem = check_answer(raw, answer)
        if problem is not None:
            problems.append(f"#{index} {problem}\n    request: {raw.data[:400]!r}")
        assert module_registry.process.running, f"registry died at #{index}: {raw.data[:400]!r}"
    print(f"sent {sent} requests; statuses {sorted(statuses.items())}")
    assert module_registry.process.answers(), "the registry no longer answers"
    assert sent >= min(REQUESTS, 500), f"only {sent} requests in {TIME_LIMIT}s"
    assert not problems, f"seed {seed}: {len(problems)} problems:\n" + "\n".join(problems[:30])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzz_grammar_is_deterministic(seed: int) -> None:
    """The same seed builds the same requests: a run can be replayed."""

    def run() -> list[bytes]:
        rng = random.Random(seed)
        return [fuzz_request(rng, State()).data for _ in range(200)]

    assert run() == run()
