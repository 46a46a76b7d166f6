"""
Distribution's C{token} access controller: first in memory (each signing
algorithm, each way a token names its key, each reason to refuse one, the
challenges, the options), then in real processes, txregistry beside
Distribution 2.8 (C{docker-registry}) behind one test token server
(L{txregistry.testing.tokenserver}): skopeo following the challenge to the
token server, what a user with less access may not do, the catalog,
cross-repository mounts, and attacks, each answered as Distribution
answers it.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from zope.interface.verify import verifyObject

from clients import Clients, CommandFailed, ImageSet, OCILayout, Target, same_image
from support import assert_error, sha256, temporary_directory
from txregistry.auth.access import CATALOG, repository_access, scope
from txregistry.auth.jwt import TrustedKeys
from txregistry.auth.keys import b64url_encode, jwk_thumbprint, libtrust_key_id, public_jwk
from txregistry.auth.plugins import access_controller_factories
from txregistry.auth.token import TokenAccessController, TokenAccessControllerFactory
from txregistry.config import ConfigError
from txregistry.interfaces import Access, AuthRequest, IAccessController, Identity
from txregistry.testing.client import HTTPResponse, request
from txregistry.testing.tokenserver import (
    PrivateKey,
    TokenServer,
    TokenUser,
    grant,
    make_certificate,
    pem,
    sign_token,
    signing_key,
    x5c,
)

# Whole seconds, as certificates count time; the certificates the tests make
# are valid from an hour before now.
NOW = float(int(time.time()))
ISSUER = "test-issuer"
SERVICE = "test-registry"
REALM = "https://auth.example/token"
PULL = [repository_access("team/app", "pull")]
PUSH = [*PULL, repository_access("team/app", "push")]
CHALLENGE = f'Bearer realm="{REALM}",service="{SERVICE}"'
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
ALGORITHMS += ["ES256", "ES384", "ES512", "EdDSA"]


# -- in memory ---------------------------------------------------------------------------


def claims(**overrides: Any) -> dict[str, Any]:
    """Claims a controller made by L{ControllerTests.controller} accepts: pull on team/app."""
    document = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": SERVICE,
        "exp": int(NOW) + 300,
        "nbf": int(NOW),
        "iat": int(NOW),
        "jti": "some-id",
        "access": [{"type": "repository", "name": "team/app", "actions": ["pull"]}],
    }
    document.update(overrides)
    return {name: value for name, value in document.items() if value is not None}


def segment(document: Any) -> str:
    """A JSON document as a token's base64url part."""
    return b64url_encode(json.dumps(document).encode())


class ControllerTests(SynchronousTestCase):
    """
    Tokens checked by a controller trusting one root certificate (an
    ES256 key), at L{NOW}.
    """

    def setUp(self) -> None:
        self.key = signing_key("ES256")
        self.certificate = make_certificate(self.key, "token signer")
        self.kid = libtrust_key_id(self.key.public_key())

    def controller(
        self,
        roots: list[x509.Certificate] | None = None,
        keys: dict[str, Any] | None = None,
        **options: Any,
    ) -> TokenAccessController:
        trusted = TrustedKeys.build(roots or [self.certificate], keys or {})
        return TokenAccessController(REALM, SERVICE, ISSUER, trusted, clock=lambda: NOW, **options)

    def token(
        self, key: PrivateKey | bytes | None = None, alg: str = "ES256", **header: Any
    ) -> Callable[..., str]:
        """A signer of claims with C{key} (ours), C{alg} and C{header} (our C{kid})."""
        members = {"typ": "JWT", "alg": alg, "kid": self.kid, **header}
        members = {name: value for name, value in members.items() if value is not None}
        return lambda **overrides: sign_token(members, claims(**overrides), key or self.key)

    def ask(
        self,
        authorization: str | None,
        access: list[Access] = PULL,
        controller: TokenAccessController | None = None,
        **headers: str,
    ) -> Any:
        raw: dict[bytes, list[bytes]] = {
            name.replace("_", "-").encode(): [value.encode()] for name, value in headers.items()
        }
        if authorization is not None:
            raw[b"Authorization"] = [authorization.encode()]
        request = AuthRequest("GET", "/v2/team/app/tags/list", Headers(raw), "127.0.0.1")
        return (controller or self.controller()).authorized(request, access)

    def accepted(self, token: str, **options: Any) -> Identity:
        result: Identity = self.successResultOf(self.ask(f"Bearer {token}", **options))
        return result

    def refused(self, token: str, error: str = "invalid_token", **options: Any) -> None:
        """C{token} gets a 401 with the challenge and C{error}."""
        failure: Failure = self.failureResultOf(self.ask(f"Bearer {token}", **options))
        value: Any = failure.value
        self.assertEqual(value.status, 401)
        self.assertEqual(value.error_code.code, "UNAUTHORIZED")
        access = options.get("access", PULL)
        expected = CHALLENGE + (f',scope="{scope(access)}"' if access else "")
        self.assertEqual(value.headers["WWW-Authenticate"], f'{expected},error="{error}"')

    # -- what verifies ------------------------------------------------------------------

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IAccessController, self.controller()))

    def test_identity_is_the_subject(self) -> None:
        """A token that verifies lets the request in as its C{sub}."""
        self.assertEqual(self.accepted(self.token()()), Identity("alice"))
        self.assertEqual(self.accepted(self.token()(sub=None)), Identity(None))

    def test_each_algorithm(self) -> None:
        """
        RS, PS and ES with SHA-256, 384 and 512, and EdDSA (Ed25519), each
        with a key of its kind named by the libtrust key ID of its
        certificate.
        """
        for alg in ALGORITHMS:
            key = signing_key(alg)
            root = make_certificate(key, alg)
            token = self.token(key, alg, kid=libtrust_key_id(key.public_key()))()
            self.assertEqual(self.accepted(token, controller=self.controller([root])).name, "alice")

    def test_signing_algorithms_option(self) -> None:
        """Only the algorithms C{signingalgorithms} lists verify."""
        controller = self.controller(algorithms=frozenset({"RS256"}))
        self.refused(self.token()(), controller=controller)

    def test_kid_thumbprint(self) -> None:
        """Distribution 3 names a root certificate's key by its RFC 7638 thumbprint."""
        self.accepted(self.token(kid=jwk_thumbprint(self.key.public_key()))())

    def test_rfc7638_thumbprint(self) -> None:
        """The thumbprint of RFC 7638's own example key (section 3.1)."""
        from txregistry.auth.keys import public_key_from_jwk

        example = {
            "kty": "RSA",
            "e": "AQAB",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFx"
            "uhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h"
            "4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbI"
            "SD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEg"
            "U8awapJzKnqDKgw",
        }
        key = public_key_from_jwk(example)
        self.assertEqual(jwk_thumbprint(key), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        self.assertEqual(public_jwk(key), example)

    def test_libtrust_key_id(self) -> None:
        """
        libtrust's key ID: SHA-256 of the DER SubjectPublicKeyInfo, 240 bits
        of it in base32, twelve groups of four.
        """
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        digest = hashes.Hash(hashes.SHA256())
        digest.update(der)
        encoded = base64.b32encode(digest.finalize()[:30]).decode()
        groups = self.kid.split(":")
        self.assertEqual(len(groups), 12)
        self.assertEqual("".join(groups), encoded)

    def test_jwks(self) -> None:
        """A key of the JWKS file is named by its C{kid}."""
        key = signing_key("RS256")
        controller = self.controller(keys={"jwks-key-1": key.public_key()})
        self.accepted(self.token(key, "RS256", kid="jwks-key-1")(), controller=controller)
        self.refused(self.token(key, "RS256", kid="jwks-key-2")(), controller=controller)

    def test_x5c_chain(self) -> None:
        """
        An C{x5c} chain, leaf first, intermediates in any order, leading to
        a root CA: the leaf's key signs.
        """
        root_key = signing_key("ES256")
        root = make_certificate(root_key, "root", ca=True)
        middle_key = signing_key("RS256")
        middle = make_certificate(middle_key, "middle", (root, root_key), ca=True)
        leaf_key = signing_key("EdDSA")
        leaf = make_certificate(leaf_key, "leaf", (middle, middle_key))
        controller = self.controller([root])
        other = make_certificate(signing_key("ES256"), "other", ca=True)
        for chain in ([leaf, middle], [leaf, other, middle]):
            token = self.token(leaf_key, "EdDSA", kid=None, x5c=x5c(chain))()
            self.accepted(token, controller=controller)
        # Directly under the root, and the root itself.
        direct = make_certificate(leaf_key, "leaf", (root, root_key))
        self.accepted(self.token(leaf_key, "EdDSA", x5c=x5c([direct]))(), controller=controller)
        self.accepted(self.token(root_key, x5c=x5c([root]))(), controller=controller)

    def test_x5c_refused(self) -> None:
        """
        Chains that do not lead to a root: a missing intermediate, one
        that is not a CA, a root that is not a CA, an expired leaf, a path
        longer than the root's path length allows, another root, a key
        other than the leaf's, too many certificates, ones that do not
        parse.
        """
        root_key, middle_key, leaf_key = (signing_key("ES256") for _ in range(3))
        root = make_certificate(root_key, "root", ca=True)
        middle = make_certificate(middle_key, "middle", (root, root_key), ca=True)
        leaf = make_certificate(leaf_key, "leaf", (middle, middle_key))
        not_ca = make_certificate(middle_key, "middle", (root, root_key), ca=False)
        under_not_ca = make_certificate(leaf_key, "leaf", (not_ca, middle_key))
        expired = make_certificate(
            leaf_key, "leaf", (root, root_key), valid_from=NOW - 7200, valid_for=3600
        )
        plain_root = make_certificate(root_key, "root")
        under_plain = make_certificate(leaf_key, "leaf", (plain_root, root_key))
        short = make_certificate(root_key, "short", ca=True, path_length=0)
        short_middle = make_certificate(middle_key, "middle", (short, root_key), ca=True)
        under_short = make_certificate(leaf_key, "leaf", (short_middle, middle_key))
        for roots, chain, key in [
            ([root], [leaf], leaf_key),
            ([root], [under_not_ca, not_ca], leaf_key),
            ([root], [expired], leaf_key),
            ([plain_root], [under_plain], leaf_key),
            ([short], [under_short, short_middle], leaf_key),
            ([self.certificate], [leaf, middle], leaf_key),
            ([root], [leaf, middle], signing_key("ES256")),
            ([root], [leaf, *[middle] * 5], leaf_key),
        ]:
            token = self.token(key, kid=None, x5c=x5c(chain))()
            self.refused(token, controller=self.controller(roots))
        for bad in ["not base64!", base64.b64encode(b"not DER").decode(), 1]:
            self.refused(self.token(kid=None, x5c=[bad])())
        self.refused(self.token(kid=None, x5c=[])())
        self.refused(self.token(kid=None, x5c="x")())

    def test_x5c_before_kid(self) -> None:
        """As in Distribution, a token with C{x5c} is judged by it, whatever its C{kid}."""
        stranger = signing_key("ES256")
        token = self.token(x5c=x5c([make_certificate(stranger, "stranger")]))()
        self.refused(token)

    def test_embedded_jwk(self) -> None:
        """
        A C{jwk} header: a trusted key by its libtrust ID, thumbprint or
        C{kid}, the trusted key itself used; an untrusted key refused; with
        a chain of its own, the chain's leaf key.
        """
        public = public_jwk(self.key.public_key())
        self.accepted(self.token(kid=None, jwk=public)())
        self.accepted(self.token(kid=None, jwk={**public, "kid": self.kid})())
        stranger = signing_key("ES256")
        stranger_jwk = public_jwk(stranger.public_key())
        self.refused(self.token(stranger, kid=None, jwk=stranger_jwk)())
        # Naming a trusted key by kid does not make the stranger's key trusted.
        self.refused(self.token(stranger, kid=None, jwk={**stranger_jwk, "kid": self.kid})())

        root_key, leaf_key = signing_key("ES256"), signing_key("ES256")
        root = make_certificate(root_key, "root", ca=True)
        leaf = make_certificate(leaf_key, "leaf", (root, root_key))
        chained = {**public_jwk(leaf_key.public_key()), "x5c": x5c([leaf])}
        controller = self.controller([root])
        self.accepted(self.token(leaf_key, kid=None, jwk=chained)(), controller=controller)
        mismatched = {**stranger_jwk, "x5c": x5c([leaf])}
        self.refused(self.token(stranger, kid=None, jwk=mismatched)(), controller=controller)

    # -- the claims ---------------------------------------------------------------------

    def test_time_with_leeway(self) -> None:
        """C{exp} and C{nbf} hold with 60 s of leeway, as Distribution's."""
        sign = self.token()
        self.accepted(sign(exp=int(NOW) - 59))
        self.refused(sign(exp=int(NOW) - 61))
        self.accepted(sign(nbf=int(NOW) + 59))
        self.refused(sign(nbf=int(NOW) + 61))
        self.refused(sign(exp=None))  # an exp of 0, as Go reads it
        self.refused(sign(exp=NOW + 300.5))  # not an int64
        self.refused(sign(exp="tomorrow"))
        self.refused(sign(exp=True))

    def test_audience_and_issuer(self) -> None:
        """C{aud} (one, or a list) must name the service; C{iss} be the issuer."""
        sign = self.token()
        self.accepted(sign(aud=["another-registry", SERVICE]))
        self.refused(sign(aud="another-registry"))
        self.refused(sign(aud=["another-registry"]))
        self.refused(sign(aud=None))
        self.refused(sign(aud=[SERVICE, 1]))
        self.refused(sign(iss="another-issuer"))
        self.refused(sign(iss=None))

    def test_claim_types(self) -> None:
        """Claims of the wrong JSON type are refused, as Distribution fails to decode them."""
        sign = self.token()
        for claim, value in [("sub", 1), ("jti", 1), ("iat", "now"), ("iss", [ISSUER])]:
            self.refused(sign(**{claim: value}))

    def test_access(self) -> None:
        """
        The C{access} claim must grant each action asked on the resource's
        type and name; C{*} grants any; the catalog needs C{*} itself.
        """
        sign = self.token()
        pull_push = [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]
        self.accepted(sign(access=pull_push), access=PUSH)
        self.refused(sign(), "insufficient_scope", access=PUSH)
        everything = [{"type": "repository", "name": "team/app", "actions": ["*"]}]
        self.accepted(sign(access=everything), access=PUSH)
        split = [
            {"type": "repository", "name": "team/app", "actions": ["pull"]},
            {"type": "repository", "name": "team/app", "actions": ["push"]},
        ]
        self.accepted(sign(access=split), access=PUSH)
        other = [{"type": "repository", "name": "team/other", "actions": ["*"]}]
        self.refused(sign(access=other), "insufficient_scope")
        self.refused(sign(access=None), "insufficient_scope")
        catalog = [{"type": "registry", "name": "catalog", "actions": ["*"]}]
        self.accepted(sign(access=catalog), access=[CATALOG])
        catalog_pull = [{"type": "registry", "name": "catalog", "actions": ["pull"]}]
        self.refused(sign(access=catalog_pull), "insufficient_scope", access=[CATALOG])
        self.refused(sign(access=pull_push), "insufficient_scope", access=[CATALOG])
        # GET /v2/ asks for nothing: any valid token will do.
        self.accepted(sign(access=[]), access=[])
        for malformed in ["all", [["pull"]], [{"type": "repository", "actions": "pull"}]]:
            self.refused(sign(access=malformed))

    # -- what is refused ----------------------------------------------------------------

    def test_no_token(self) -> None:
        """No bearer token: the challenge, with no error."""
        for authorization in [None, "Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer  two spaces"]:
            failure = self.failureResultOf(self.ask(authorization))
            self.assertEqual(
                failure.value.headers["WWW-Authenticate"],  # type: ignore[attr-defined]
                f'{CHALLENGE},scope="repository:team/app:pull"',
            )
        failure = self.failureResultOf(self.ask(None, access=[]))
        self.assertEqual(failure.value.headers["WWW-Authenticate"], CHALLENGE)  # type: ignore[attr-defined]
        self.successResultOf(self.ask(f"bEaReR {self.token()()}"))

    def test_unsigned_and_hmac(self) -> None:
        """
        C{alg: none}, with or without a signature; HS256/384/512 with the
        trusted public key (PEM, DER or JWK) as the secret, even when
        C{signingalgorithms} lists HMAC.
        """
        _, payload, signature = self.token()().split(".")
        none_header = segment({"typ": "JWT", "alg": "none", "kid": self.kid})
        self.refused(f"{none_header}.{payload}.")
        self.refused(f"{none_header}.{payload}.{signature}")
        public = self.key.public_key()
        secrets = [
            public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            json.dumps(public_jwk(public)).encode(),
        ]
        everything = frozenset({"HS256", "HS384", "HS512", "ES256"})
        for alg in ("HS256", "HS384", "HS512"):
            for secret in secrets:
                token = self.token(secret, alg)()
                self.refused(token)
                self.refused(token, controller=self.controller(algorithms=everything))

    def test_forged(self) -> None:
        """
        A payload altered under a good signature; a signature of another
        key under a trusted C{kid}; a key that names itself; an algorithm
        that does not suit the key; critical extensions; no key named.
        """
        header, _, signature = self.token()().split(".")
        more = segment(
            claims(access=[{"type": "repository", "name": "team/app", "actions": ["*"]}])
        )
        self.refused(f"{header}.{more}.{signature}")
        stranger = signing_key("ES256")
        self.refused(self.token(stranger)())
        self.refused(self.token(stranger, kid=libtrust_key_id(stranger.public_key()))())
        rsa_key = signing_key("RS256")
        self.refused(self.token(rsa_key, "RS256")())  # our kid, another key
        self.refused(self.token(alg="ES384")())  # a P-256 key
        self.refused(self.token(crit=["exp"])())
        self.refused(self.token(kid=None)())
        self.refused(self.token(kid="")())

    def test_malformed(self) -> None:
        """Not three base64url parts of JSON objects: refused as invalid."""
        header, payload, signature = self.token()().split(".")
        for token in [
            "garbage",
            f"{header}.{payload}",
            f"{header}.{payload}.{signature}.{signature}",
            f"{header}.{payload}!.{signature}",
            f"{header}=.{payload}.{signature}",
            f"{header}.{payload}.{signature}=",
            f"{header}.{b64url_encode(b'{not json')}.{signature}",
            f"{header}.{segment([1, 2])}.{signature}",
            f"{segment('ES256')}.{payload}.{signature}",
            f"{header}.{b64url_encode(b'[' * 100_000)}.{signature}",
            f"{header}.{b64url_encode(bytes([0xFF, 0xFE]))}.{signature}",
            "..",
        ]:
            self.refused(token)

    def test_autoredirect(self) -> None:
        """
        With C{autoredirect}, the realm is C{/auth/token} (or
        C{autoredirectpath}) on the host the request named, over https
        unless C{X-Forwarded-Proto} says otherwise (Distribution 3).
        """
        for path, headers, realm in [
            ("/auth/token", {"Host": "r.example:5000"}, "https://r.example:5000/auth/token"),
            (
                "/auth/token",
                {"Host": "r.example", "X_Forwarded_Proto": "http"},
                "http://r.example/auth/token",
            ),
            ("tokens", {"Host": "r.example"}, "https://r.example/tokens"),
        ]:
            controller = self.controller(autoredirect_path=path)
            failure = self.failureResultOf(self.ask(None, [], controller, **headers))
            self.assertEqual(
                failure.value.headers["WWW-Authenticate"],  # type: ignore[attr-defined]
                f'Bearer realm="{realm}",service="{SERVICE}"',
            )


class FactoryTests(SynchronousTestCase):
    """The options, as Distribution's: what is required, what is refused."""

    def setUp(self) -> None:
        folder = Path(temporary_directory(self, "token-options-"))
        self.folder = folder
        self.key = signing_key("ES256")
        self.bundle = folder / "bundle.pem"
        self.bundle.write_bytes(pem([make_certificate(self.key, "signer")]))
        self.options: dict[str, Any] = {
            "realm": REALM,
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(self.bundle),
        }

    def create(self, **options: Any) -> TokenAccessController:
        merged = {**self.options, **options}
        controller = TokenAccessControllerFactory().create(
            {name: value for name, value in merged.items() if value is not None}
        )
        assert isinstance(controller, TokenAccessController)
        return controller

    def refuses(self, key: str, **options: Any) -> str:
        with self.assertRaises(ConfigError) as raised:
            self.create(**options)
        self.assertEqual(raised.exception.key, f"auth.token.{key}")
        problem: str = raised.exception.problem
        return problem

    def test_options(self) -> None:
        controller = self.create()
        self.assertEqual((controller.realm, controller.service), (REALM, SERVICE))
        self.assertEqual(controller.issuer, ISSUER)
        self.assertIsNone(controller.autoredirect_path)
        self.assertIn(libtrust_key_id(self.key.public_key()), controller.trusted.by_id)
        self.assertNotIn("HS256", controller.algorithms)
        self.assertIn("EdDSA", controller.algorithms)

    def test_required(self) -> None:
        for key in ("realm", "service", "issuer"):
            self.refuses(key, **{key: None})
            self.refuses(key, **{key: ""})
        self.assertIn("jwks", self.refuses("rootcertbundle", rootcertbundle=None))

    def test_refused_values(self) -> None:
        self.refuses("colour", colour="blue")
        self.refuses("realm", realm=1)
        self.refuses("autoredirect", autoredirect="yes")
        self.assertIn("cannot read", self.refuses("rootcertbundle", rootcertbundle="/nonexistent"))
        not_pem = self.folder / "not.pem"
        not_pem.write_text("hello")
        self.assertIn(
            "no PEM certificate", self.refuses("rootcertbundle", rootcertbundle=str(not_pem))
        )
        self.refuses("signingalgorithms", signingalgorithms="RS256")
        problem = self.refuses("signingalgorithms", signingalgorithms=["RS256", "XS999"])
        self.assertEqual(problem, "unsupported signing algorithm: XS999")

    def test_signing_algorithms(self) -> None:
        """Distribution 3's names; none listed means its public-key ones."""
        self.assertEqual(self.create(signingalgorithms=["RS256"]).algorithms, {"RS256"})
        listed = self.create(signingalgorithms=["ES256", "HS256"]).algorithms
        self.assertEqual(listed, {"ES256", "HS256"})
        self.assertEqual(len(self.create(signingalgorithms=[]).algorithms), 10)

    def test_autoredirect(self) -> None:
        self.assertEqual(self.create(autoredirect=True).autoredirect_path, "/auth/token")
        path = self.create(autoredirect=True, autoredirectpath="/tokens").autoredirect_path
        self.assertEqual(path, "/tokens")
        self.assertIsNone(self.create(autoredirect=False, autoredirectpath="/x").autoredirect_path)

    def test_jwks(self) -> None:
        """A JWKS file alone will do; each key needs its C{kid}; no symmetric keys."""
        jwks = self.folder / "keys.json"
        entry = {**public_jwk(self.key.public_key()), "kid": "key-1", "use": "sig"}
        jwks.write_text(json.dumps({"keys": [entry]}))
        controller = self.create(rootcertbundle=None, jwks=str(jwks))
        self.assertEqual(list(controller.trusted.by_id), ["key-1"])
        for document, problem in [
            ({"keys": [{**entry, "kid": None}]}, "has no kid"),
            ({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}]}, "unsupported key type"),
            ({"keys": [{"kty": "RSA", "n": "!", "e": "AQAB", "kid": "r"}]}, "malformed RSA key"),
            ({"keys": {}}, "not a JWK set"),
            ([], "not a JWK set"),
        ]:
            jwks.write_text(json.dumps(document))
            self.assertIn(problem, self.refuses("jwks", jwks=str(jwks)))
        jwks.write_text("{")
        self.assertIn("not a JWK set", self.refuses("jwks", jwks=str(jwks)))

    def test_found_as_plugin(self) -> None:
        factory = access_controller_factories()["token"]
        controller = factory.create(self.options)
        self.assertTrue(verifyObject(IAccessController, controller))


# -- the test token server -----------------------------------------------------------------


def test_grant() -> None:
    """The intersection of what is asked and what the access list allows, per resource."""
    allowed = {"repository:team/*": ["pull", "push"], "registry:catalog": ["*"]}
    assert grant(allowed, ["repository:team/app:pull,push,delete"]) == [
        ("repository", "team/app", ["pull", "push"])
    ]
    assert grant(allowed, ["repository:other/app:pull", "registry:catalog:*"]) == [
        ("registry", "catalog", ["*"])
    ]
    assert grant(allowed, ["repository(plugin):team/x:pull", "nonsense"]) == [
        ("repository", "team/x", ["pull"])
    ]


def fetch_token(
    tokens: TokenServer,
    user: str | None,
    *scopes: str,
    password: str | None = None,
    service: str | None = None,
) -> HTTPResponse:
    """Ask the token server, as a client would, for C{scopes}."""
    query = urlencode([("service", service or tokens.service), *(("scope", s) for s in scopes)])
    headers = {}
    if user is not None:
        credentials = f"{user}:{password or USERS[user].password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
    return request("GET", f"{tokens.realm}?{query}", headers=headers)


def token_for(tokens: TokenServer, user: str, *scopes: str) -> str:
    """A token from the token server for C{user} and C{scopes}."""
    response = fetch_token(tokens, user, *scopes)
    assert response.status == 200, response.body
    token: str = response.json()["token"]
    return token


def test_token_server(tokens: TokenServer, tmp_path: Path) -> None:
    """
    The spec's answer (token, access_token, expires_in, issued_at); 401 for
    wrong credentials and, unless anonymous access is allowed, for none;
    400 for another service.
    """
    response = fetch_token(tokens, "bob", "repository:team/app:pull,push")
    assert response.status == 200
    answer = response.json()
    assert answer["token"] == answer["access_token"]
    assert answer["expires_in"] == tokens.lifetime
    assert answer["issued_at"].endswith("Z")
    payload = json.loads(base64.urlsafe_b64decode(answer["token"].split(".")[1] + "=="))
    assert (payload["sub"], payload["aud"], payload["iss"]) == (
        "bob",
        tokens.service,
        tokens.issuer,
    )
    assert payload["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    assert fetch_token(tokens, "bob", password="wrong").status == 401
    assert fetch_token(tokens, None).status == 401
    assert fetch_token(tokens, "bob", service="another-registry").status == 400

    with TokenServer(tmp_path, anonymous={"repository:public/*": ["pull"]}) as anonymous:
        response = fetch_token(anonymous, None, "repository:public/app:pull,push")
        payload = json.loads(
            base64.urlsafe_b64decode(response.json()["token"].split(".")[1] + "==")
        )
        assert payload["sub"] == ""
        assert payload["access"] == [
            {"type": "repository", "name": "public/app", "actions": ["pull"]}
        ]


# -- real processes --------------------------------------------------------------------------

USERS = {
    # Pushes, pulls and deletes in team/*, pulls from public/*, reads the catalog.
    "alice": TokenUser(
        "alice-secret",
        {
            "repository:team/*": ["pull", "push", "delete"],
            "repository:public/*": ["pull"],
            "registry:catalog": ["*"],
        },
    ),
    # Pulls from team/*, nothing else.
    "bob": TokenUser("bob-secret", {"repository:team/*": ["pull"]}),
    # Everything.
    "admin": TokenUser("admin-secret", {"repository:*": ["*"], "registry:catalog": ["*"]}),
}


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    """The token server of the module's registries."""
    with TokenServer(tmp_path_factory.mktemp("token-server"), USERS) as server:
        yield server


def guarded_target(kind: str, tokens: TokenServer, workdir: Path) -> Target:
    """A registry of C{kind} behind C{tokens}, started."""
    target = Target(kind, workdir / "root", workdir)
    assert target.process.config is not None
    target.process.config["auth"] = tokens.auth_section()
    return target.start()


@pytest.fixture(scope="module", params=["txregistry", "reference"])
def guarded(
    request: pytest.FixtureRequest, tokens: TokenServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """txregistry, then Distribution 2.8, behind the token server."""
    kind: str = request.param
    target = guarded_target(kind, tokens, tmp_path_factory.mktemp(f"guarded-{kind}"))
    try:
        yield target
    finally:
        target.stop()
    problems = target.log_problems()
    assert not problems, f"{kind} logged:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def txregistry(tokens: TokenServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """txregistry alone behind the token server, for what Distribution does otherwise."""
    target = guarded_target("txregistry", tokens, tmp_path_factory.mktemp("guarded-own"))
    try:
        yield target
    finally:
        target.stop()
    problems = target.log_problems()
    assert not problems, "txregistry logged:\n" + "\n".join(problems)


def challenge(response: HTTPResponse) -> dict[str, str]:
    """
    The parameters of a 401's Bearer challenge; the scope's actions sorted,
    since Distribution lists them in no fixed order.
    """
    header = response.header("WWW-Authenticate") or ""
    assert header.startswith("Bearer "), header
    parameters = dict(re.findall(r'(\w+)="([^"]*)"', header))
    if "scope" in parameters:
        parameters["scope"] = " ".join(
            f"{kind}:{name}:{','.join(sorted(actions.split(',')))}"
            for kind, name, actions in (one.rsplit(":", 2) for one in parameters["scope"].split())
        )
    return parameters


def assert_refused(
    response: HTTPResponse, tokens: TokenServer, scope_text: str | None, error: str | None
) -> None:
    """A 401 with the OCI error UNAUTHORIZED and Distribution's challenge."""
    assert_error(response, 401, "UNAUTHORIZED")
    expected = {"realm": tokens.realm, "service": tokens.service}
    if scope_text is not None:
        expected["scope"] = scope_text
    if error is not None:
        expected["error"] = error
    assert challenge(response) == expected


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_skopeo_follows_the_challenge(
    guarded: Target, tokens: TokenServer, clients: Clients, images: ImageSet, tmp_path: Path
) -> None:
    """
    skopeo, with credentials, gets tokens from the token server as the
    challenge says and pushes an image, then pulls it back with a user
    who may only pull; without credentials it can do neither.
    """
    clients.allow(guarded)
    image = images.single
    digest = clients.push(
        guarded, images.layout, "single", "team/app:v1", "--dest-creds", "alice:alice-secret"
    )
    assert digest == image.digest
    asked = [one for one in tokens.requests if one.account == "alice"]
    assert any("repository:team/app:pull,push" in one.scopes for one in asked), asked

    out = tmp_path / "out"
    clients.skopeo(
        guarded,
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        "bob:bob-secret",
        guarded.ref("team/app", "v1"),
        f"oci:{out}:pulled",
    )
    same_image(OCILayout(out).read_image("pulled"), image)

    with pytest.raises(CommandFailed):
        clients.push(guarded, images.layout, "single", "team/app:anonymous")
    with pytest.raises(CommandFailed):
        clients.skopeo(guarded, "inspect", "--tls-verify=false", guarded.ref("team/app", "v1"))


def test_pull_only_user(
    guarded: Target, tokens: TokenServer, clients: Clients, images: ImageSet
) -> None:
    """
    A user who may only pull: skopeo cannot push; its token (granted pull
    only) gets 401 C{insufficient_scope} for an upload and for a delete,
    and reads.
    """
    clients.allow(guarded)
    clients.push(
        guarded, images.layout, "single", "team/pull-only:v1", "--dest-creds", "admin:admin-secret"
    )
    with pytest.raises(CommandFailed) as failed:
        clients.push(
            guarded, images.layout, "other", "team/pull-only:v2", "--dest-creds", "bob:bob-secret"
        )
    assert "unauthorized" in failed.value.result.stderr.lower(), failed.value.result.stderr

    token = token_for(tokens, "bob", "repository:team/pull-only:pull,push")
    response = guarded.request("POST", "team/pull-only/blobs/uploads/", headers=bearer(token))
    assert_refused(response, tokens, "repository:team/pull-only:pull,push", "insufficient_scope")

    token = token_for(tokens, "bob", "repository:team/pull-only:delete")
    path = f"team/pull-only/manifests/{images.single.digest}"
    response = guarded.request("DELETE", path, headers=bearer(token))
    assert_refused(response, tokens, "repository:team/pull-only:delete", "insufficient_scope")

    token = token_for(tokens, "bob", "repository:team/pull-only:pull")
    response = guarded.request("GET", "team/pull-only/tags/list", headers=bearer(token))
    assert response.status == 200
    assert response.json()["tags"] == ["v1"]
    token = token_for(tokens, "alice", "repository:team/pull-only:delete")
    assert guarded.request("DELETE", path, headers=bearer(token)).status == 202


def test_catalog(guarded: Target, tokens: TokenServer) -> None:
    """The catalog needs C{registry:catalog:*}."""
    response = guarded.request("GET", "_catalog")
    assert_refused(response, tokens, "registry:catalog:*", None)
    token = token_for(tokens, "alice", "registry:catalog:*")
    response = guarded.request("GET", "_catalog", headers=bearer(token))
    assert response.status == 200
    assert "repositories" in response.json()
    token = token_for(tokens, "bob", "registry:catalog:*")
    response = guarded.request("GET", "_catalog", headers=bearer(token))
    assert_refused(response, tokens, "registry:catalog:*", "insufficient_scope")


def test_base_needs_any_valid_token(guarded: Target, tokens: TokenServer) -> None:
    """C{GET /v2/} asks for no scope, and takes any valid token."""
    response = guarded.request("GET", "")
    assert response.status == 401
    assert challenge(response) == {"realm": tokens.realm, "service": tokens.service}
    assert guarded.request("GET", "", headers=bearer(token_for(tokens, "bob"))).status == 200


def test_mount_needs_pull_on_the_source(txregistry: Target, tokens: TokenServer) -> None:
    """
    A cross-repository mount from a repository the token grants no pull on
    is a plain upload (202), and learns nothing; with pull, it mounts (201).
    (Distribution 2.8 answers the first with a 401 instead.)
    """
    data = b"a layer to mount"
    for source in ("secret/src", "public/src"):
        token = token_for(tokens, "admin", f"repository:{source}:pull,push")
        response = txregistry.request(
            "POST", f"{source}/blobs/uploads/?digest={sha256(data)}", data, bearer(token)
        )
        assert response.status == 201, response.body
    mount = f"team/mounted/blobs/uploads/?mount={sha256(data)}&from="
    token = token_for(
        tokens, "alice", "repository:team/mounted:pull,push", "repository:secret/src:pull"
    )
    response = txregistry.request("POST", mount + "secret/src", headers=bearer(token))
    assert response.status == 202, response.body
    token = token_for(
        tokens, "alice", "repository:team/mounted:pull,push", "repository:public/src:pull"
    )
    response = txregistry.request("POST", mount + "public/src", headers=bearer(token))
    assert response.status == 201, response.body
    assert response.header("Docker-Content-Digest") == sha256(data)


# Tokens a registry must refuse, each made by a function of the token server,
# and the error its challenge names.
def _forged_payload(tokens: TokenServer) -> str:
    header, _, signature = tokens.issue("bob", [REPO_PULL]).split(".")
    everything = tokens.issue("bob", [("repository", "team/app", ["*"])]).split(".")[1]
    return f"{header}.{everything}.{signature}"


def _none(tokens: TokenServer) -> str:
    return tokens.issue("bob", [REPO_PULL], header={"alg": "none"}, key=b"")


def _hs256(tokens: TokenServer) -> str:
    public = tokens.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return tokens.issue("bob", [REPO_PULL], header={"alg": "HS256"}, key=public)


def _unknown_key(tokens: TokenServer) -> str:
    stranger = signing_key("ES256")
    kid = libtrust_key_id(stranger.public_key())
    return tokens.issue("bob", [REPO_PULL], header={"kid": kid}, key=stranger)


def _self_signed_x5c(tokens: TokenServer) -> str:
    stranger = signing_key("ES256")
    chain = x5c([make_certificate(stranger, tokens.issuer)])
    return tokens.issue("bob", [REPO_PULL], header={"kid": None, "x5c": chain}, key=stranger)


REPO_PULL = ("repository", "team/app", ["pull"])
ATTACKS: dict[str, tuple[Callable[[TokenServer], str], str]] = {
    "another repository": (
        lambda t: t.issue("bob", [("repository", "team/other", ["pull", "push"])]),
        "insufficient_scope",
    ),
    "expired": (lambda t: t.issue("bob", [REPO_PULL], exp=int(time.time()) - 120), "invalid_token"),
    "not yet valid": (
        lambda t: t.issue("bob", [REPO_PULL], nbf=int(time.time()) + 120),
        "invalid_token",
    ),
    "another audience": (lambda t: t.issue("bob", [REPO_PULL], aud="elsewhere"), "invalid_token"),
    "another issuer": (lambda t: t.issue("bob", [REPO_PULL], iss="impostor"), "invalid_token"),
    "unknown key": (_unknown_key, "invalid_token"),
    "another key under the trusted kid": (
        lambda t: t.issue("bob", [REPO_PULL], key=signing_key("ES256")),
        "invalid_token",
    ),
    "self-signed x5c": (_self_signed_x5c, "invalid_token"),
    "forged payload": (_forged_payload, "invalid_token"),
    "alg none": (_none, "invalid_token"),
    "HS256 with the public key as secret": (_hs256, "invalid_token"),
    "garbage": (lambda t: "garbage", "invalid_token"),
    "two parts": (lambda t: ".".join(t.issue("bob", [REPO_PULL]).split(".")[:2]), "invalid_token"),
    "bad base64": (
        lambda t: t.issue("bob", [REPO_PULL]).replace(".", ".*", 1),
        "invalid_token",
    ),
    "bad JSON": (
        lambda t: f"{b64url_encode(b'{')}.{b64url_encode(b'[')}.{b64url_encode(b'x')}",
        "invalid_token",
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attack(guarded: Target, tokens: TokenServer, attack: str) -> None:
    """Each attack gets a 401 whose challenge names the scope and the error, as Distribution."""
    make, error = ATTACKS[attack]
    response = guarded.request("GET", "team/app/tags/list", headers=bearer(make(tokens)))
    assert_refused(response, tokens, "repository:team/app:pull", error)


def test_no_token_in_the_log(txregistry: Target, tokens: TokenServer) -> None:
    """
    Tokens, good and refused, never reach the log; why one was refused
    does.
    """
    mark = txregistry.log_mark()
    sent = [make(tokens) for make, _ in ATTACKS.values()]
    sent.append(token_for(tokens, "bob", "repository:team/app:pull"))
    for token in sent:
        txregistry.request("GET", "team/app/tags/list", headers=bearer(token))
    txregistry.request("GET", "_catalog", headers=bearer(sent[-1]))
    log = txregistry.process.log_path.read_bytes()[mark:].decode("utf-8", "replace")
    assert "Refused a bearer token: token expired" in log
    for token in sent:
        for part in {token, *(piece for piece in token.split(".") if len(piece) > 8)}:
            assert part not in log, part
