"""
The pull-through cache's upstream client (L{txregistry.proxy.upstream}):
the C{WWW-Authenticate} parser on tricky headers, then the client against
real registries on 127.0.0.1, Distribution 2.8 (C{docker-registry}) and
txregistry, each anonymous, behind the test token server and behind
htpasswd; and upstreams that refuse connections or never answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urljoin

import pytest
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from test_auth_htpasswd import hashed
from txregistry.proxy.upstream import (
    Challenge,
    ManifestHead,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRegistry,
    _next_page,
    parse_challenge_header,
    parse_challenges,
)
from txregistry.testing.client import request
from txregistry.testing.process import RegistryProcess, base_config, free_port
from txregistry.testing.tokenserver import TokenServer, TokenUser

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
ACCEPT = [OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"]
REPO = "library/app"
USER, PASSWORD = "alice", "secret-7f3a"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- the parser ------------------------------------------------------------------------


class ChallengeParserTests(SynchronousTestCase):
    """L{parse_challenge_header} on what registries send, and on harder cases."""

    def test_distribution_bearer(self) -> None:
        header = (
            'Bearer realm="https://auth.example/token",service="registry.example",'
            'scope="repository:library/app:pull,push"'
        )
        self.assertEqual(
            parse_challenge_header(header),
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://auth.example/token",
                        "service": "registry.example",
                        "scope": "repository:library/app:pull,push",
                    },
                )
            ],
        )

    def test_basic(self) -> None:
        self.assertEqual(
            parse_challenge_header('Basic realm="Registry Realm"'),
            [Challenge("basic", {"realm": "Registry Realm"})],
        )

    def test_escapes_and_separators_in_quotes(self) -> None:
        header = r'Basic realm="a \"b\", c=d\\e", charset=UTF-8'
        self.assertEqual(
            parse_challenge_header(header),
            [Challenge("basic", {"realm": 'a "b", c=d\\e', "charset": "UTF-8"})],
        )

    def test_several_challenges_in_one_value(self) -> None:
        header = 'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"'
        self.assertEqual(
            parse_challenge_header(header),
            [
                Challenge("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
                Challenge("basic", {"realm": "simple"}),
            ],
        )

    def test_spaces_case_and_empty_elements(self) -> None:
        header = ' ,BEARER  Realm = "r" ,, Service=svc ,  , Basic  realm="x",'
        self.assertEqual(
            parse_challenge_header(header),
            [
                Challenge("bearer", {"realm": "r", "service": "svc"}),
                Challenge("basic", {"realm": "x"}),
            ],
        )

    def test_token68_and_bare_schemes(self) -> None:
        self.assertEqual(
            parse_challenge_header("Negotiate abc+/Z==, Basic, Bearer realm=r"),
            [
                Challenge("negotiate", token68="abc+/Z=="),
                Challenge("basic"),
                Challenge("bearer", {"realm": "r"}),
            ],
        )

    def test_empty_quoted_value_and_first_repeat_wins(self) -> None:
        self.assertEqual(
            parse_challenge_header('Bearer realm="", realm="second", error=""'),
            [Challenge("bearer", {"realm": "", "error": ""})],
        )

    def test_several_values(self) -> None:
        self.assertEqual(
            parse_challenges(['Basic realm="a"', 'Bearer realm="b",service="c"']),
            [
                Challenge("basic", {"realm": "a"}),
                Challenge("bearer", {"realm": "b", "service": "c"}),
            ],
        )
        self.assertEqual(parse_challenge_header(""), [])

    def test_malformed(self) -> None:
        for header in [
            'Bearer realm="unterminated',
            'Bearer realm="a" service="b"',
            'Bearer realm="a", =b',
            '"quoted" realm=a',
            'Bearer="x"',
            "Bearer realm=a b=c",
        ]:
            with self.subTest(header=header):
                self.assertRaises(ValueError, parse_challenge_header, header)


# -- real upstreams --------------------------------------------------------------------


def push_image(url: str, headers: dict[str, str]) -> tuple[bytes, bytes, str]:
    """Push a one-layer image to C{REPO} as tag C{v1}: the manifest, the layer, its digest."""
    layer = b"a small layer of the test image\n" * 100
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    for blob in (layer, config):
        response = request(
            "POST", f"{url}/v2/{REPO}/blobs/uploads/?digest={sha256(blob)}", blob, headers
        )
        if response.status == 202:
            # Distribution 2.8 ignores a monolithic POST's body: finish with a PUT.
            location = urljoin(url, response.header("Location") or "")
            separator = "&" if "?" in location else "?"
            target = f"{location}{separator}digest={sha256(blob)}"
            response = request("PUT", target, blob, headers)
        assert response.status == 201, (response.status, response.body)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}],
        }
    ).encode()
    response = request(
        "PUT",
        f"{url}/v2/{REPO}/manifests/v1",
        manifest,
        {**headers, "Content-Type": OCI_MANIFEST},
    )
    assert response.status == 201, (response.status, response.body)
    return manifest, layer, sha256(layer)


class UpstreamContract:
    """
    What the client does against one upstream: a subclass says which
    registry (L{reference}) and which auth (L{auth}: C{none}, C{token},
    C{htpasswd}).
    """

    reference: ClassVar[bool]
    auth: ClassVar[str] = "none"

    workdir: ClassVar[Path]
    registry: ClassVar[RegistryProcess]
    tokens: ClassVar[TokenServer | None]
    manifest: ClassVar[bytes]
    layer: ClassVar[bytes]
    layer_digest: ClassVar[str]

    @classmethod
    def setUpClass(cls) -> None:
        cls.workdir = Path(tempfile.mkdtemp(prefix="txregistry-upstream-"))
        config = base_config(cls.workdir / "root")
        push_headers: dict[str, str] = {}
        cls.tokens = None
        if cls.auth == "token":
            users = {USER: TokenUser(PASSWORD, {"repository:*": ["pull", "push"]})}
            cls.tokens = TokenServer(cls.workdir / "tokens", users).start()
            config["auth"] = cls.tokens.auth_section()
            token = cls.tokens.issue(USER, [("repository", REPO, ["pull", "push"])])
            push_headers = {"Authorization": f"Bearer {token}"}
        elif cls.auth == "htpasswd":
            (cls.workdir / "htpasswd").write_text(f"{USER}:{hashed(PASSWORD)}\n")
            config["auth"] = {
                "htpasswd": {"realm": "upstream", "path": str(cls.workdir / "htpasswd")}
            }
            push_headers = {"Authorization": basic(USER, PASSWORD)}
        cls.registry = RegistryProcess(cls.workdir, config, reference=cls.reference)
        try:
            cls.registry.start()
            cls.manifest, cls.layer, cls.layer_digest = push_image(cls.registry.url, push_headers)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.registry.stop()
        if cls.tokens is not None:
            cls.tokens.stop()
        shutil.rmtree(cls.workdir, ignore_errors=True)

    def client(
        self, username: str | None = USER, password: str | None = PASSWORD
    ) -> UpstreamRegistry:
        """A client of the upstream, closed at the end of the test."""
        if self.auth == "none":
            username = password = None
        upstream = UpstreamRegistry(self.registry.url, username, password, reactor, timeout=10.0)
        self.addCleanup(upstream.close)  # type: ignore[attr-defined]
        return upstream

    async def test_head_manifest(self) -> None:
        check: Any = self
        head = await self.client().head_manifest(REPO, "v1", ACCEPT)
        check.assertEqual(
            head, ManifestHead(sha256(self.manifest), OCI_MANIFEST, len(self.manifest))
        )
        by_digest = await self.client().head_manifest(REPO, sha256(self.manifest), ACCEPT)
        check.assertEqual(by_digest, head)

    async def test_head_unknown(self) -> None:
        check: Any = self
        upstream = self.client()
        check.assertIsNone(await upstream.head_manifest(REPO, "nope", ACCEPT))
        check.assertIsNone(await upstream.head_manifest("library/nothing", "v1", ACCEPT))

    async def test_get_manifest(self) -> None:
        check: Any = self
        upstream = self.client()
        expected = (self.manifest, OCI_MANIFEST, sha256(self.manifest))
        check.assertEqual(await upstream.get_manifest(REPO, "v1", ACCEPT), expected)
        check.assertEqual(
            await upstream.get_manifest(REPO, sha256(self.manifest), ACCEPT), expected
        )

    async def test_get_manifest_unknown(self) -> None:
        check: Any = self
        with check.assertRaises(UpstreamNotFound) as raised:
            await self.client().get_manifest(REPO, "nope", ACCEPT)
        check.assertEqual(raised.exception.status, 404)
        check.assertIn(f"/v2/{REPO}/manifests/nope", str(raised.exception))

    async def test_get_blob(self) -> None:
        check: Any = self
        response = await self.client().get_blob(REPO, self.layer_digest)
        check.assertEqual(response.code, 200)
        check.assertEqual(await treq.content(response), self.layer)

    async def test_get_blob_unknown(self) -> None:
        check: Any = self
        with check.assertRaises(UpstreamNotFound):
            await self.client().get_blob(REPO, sha256(b"not pushed"))


class CredentialsContract(UpstreamContract):
    """What an upstream that wants credentials adds."""

    async def test_wrong_credentials(self) -> None:
        check: Any = self
        with check.assertRaises(UpstreamError) as raised:
            await self.client(USER, "wrong").head_manifest(REPO, "v1", ACCEPT)
        check.assertEqual(raised.exception.status, 401)

    async def test_no_credentials(self) -> None:
        check: Any = self
        with check.assertRaises(UpstreamError) as raised:
            await self.client(None, None).get_manifest(REPO, "v1", ACCEPT)
        check.assertEqual(raised.exception.status, 401)


class TokenContract(CredentialsContract):
    """The Bearer flow, against the test token server."""

    auth = "token"

    async def test_token_fetched_once_per_scope(self) -> None:
        """
        The first request fetches a token for the repository's pull scope
        with the credentials; later ones reuse it without a 401 first.
        """
        check: Any = self
        assert self.tokens is not None
        before = len(self.tokens.requests)
        upstream = self.client()
        await upstream.head_manifest(REPO, "v1", ACCEPT)
        await upstream.get_manifest(REPO, "v1", ACCEPT)
        response = await upstream.get_blob(REPO, self.layer_digest)
        check.assertEqual(await treq.content(response), self.layer)
        asked = self.tokens.requests[before:]
        check.assertEqual(
            [(r.account, r.scopes, r.status) for r in asked],
            [(USER, (f"repository:{REPO}:pull",), 200)],
        )
        await upstream.head_manifest("library/other", "v1", ACCEPT)
        check.assertEqual(len(self.tokens.requests), before + 2)
        check.assertEqual(self.tokens.requests[-1].scopes, ("repository:library/other:pull",))

    async def test_stale_token_replaced(self) -> None:
        """A token upstream refuses (an expired one) is dropped and a new one fetched."""
        check: Any = self
        assert self.tokens is not None
        upstream = self.client()
        expired = self.tokens.issue(USER, [("repository", REPO, ["pull"])], exp=0)
        from txregistry.proxy.upstream import _Token

        upstream._tokens[f"repository:{REPO}:pull"] = _Token(expired, float("inf"))
        before = len(self.tokens.requests)
        check.assertIsNotNone(await upstream.head_manifest(REPO, "v1", ACCEPT))
        check.assertEqual(len(self.tokens.requests), before + 1)


class BasicContract(CredentialsContract):
    auth = "htpasswd"


class ReferenceAnonymousTests(UpstreamContract, TestCase):
    reference = True


class TxregistryAnonymousTests(UpstreamContract, TestCase):
    reference = False


class ReferenceTokenTests(TokenContract, TestCase):
    reference = True


class TxregistryTokenTests(TokenContract, TestCase):
    reference = False


class ReferenceBasicTests(BasicContract, TestCase):
    reference = True


class TxregistryBasicTests(BasicContract, TestCase):
    reference = False


# -- upstreams that fail -----------------------------------------------------------------


class FailingUpstreamTests(TestCase):
    """Nothing listening, or a socket that never answers: L{UpstreamError} within the timeout."""

    timeout_seconds = 0.5

    async def fails_in_time(self, url: str, expected: str) -> None:
        upstream = UpstreamRegistry(url, None, None, reactor, timeout=self.timeout_seconds)
        self.addCleanup(upstream.close)
        operations: list[Callable[[], Deferred[Any]]] = [
            lambda: upstream.head_manifest(REPO, "v1", ACCEPT),
            lambda: upstream.get_manifest(REPO, "v1", ACCEPT),
            lambda: upstream.get_blob(REPO, sha256(b"x")),
        ]
        for operation in operations:
            started = reactor.seconds()
            with self.assertRaises(UpstreamError) as raised:
                await operation()
            self.assertLess(reactor.seconds() - started, self.timeout_seconds + 1.0)
            self.assertIn(url, str(raised.exception))
            self.assertIn(expected, str(raised.exception))
            self.assertIsNone(raised.exception.status)

    async def test_unreachable(self) -> None:
        await self.fails_in_time(f"http://127.0.0.1:{free_port()}", "unreachable")

    async def test_never_answers(self) -> None:
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        await self.fails_in_time(f"http://127.0.0.1:{port}", "no answer within 0.5s")


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        (None, None),
        ('</v2/a/tags/list?last=b&n=2>; rel="next"', "/v2/a/tags/list?last=b&n=2"),
        ("<https://up.example/v2/a/tags/list?last=b>; rel=next", "/v2/a/tags/list?last=b"),
        ('</v2/a/tags/list?n=2>; rel="next"', None),  # the page asked for: no loop
        ('</elsewhere?last=b>; rel="next"', None),
        ('</v2/a/tags/list?last=b>; rel="prev"', None),
        ("garbage", None),
    ],
)
def test_next_tag_page(link: str | None, expected: str | None) -> None:
    assert _next_page(link, "/v2/a/tags/list?n=2") == expected
