# -*- test-case-name: tests.test_auth_token -*-
"""
A token server for tests, as the Docker token spec describes one
(Distribution's C{docs/spec/auth/token.md}): C{GET /token?service=S&
scope=repository:foo:pull,push&scope=...}, with Basic credentials of a
configured user or none, answers C{{"token", "access_token",
"expires_in", "issued_at"}}; the token grants, of the actions asked, those
the user's access list allows, and is signed with a key of the server's
own, whose self-signed certificate it writes for the registry's
C{rootcertbundle}.

It runs in the test process, on a thread, on a free port of 127.0.0.1:

    users = {"alice": TokenUser("secret", {"repository:alice/*": ["pull", "push"]})}
    with TokenServer(tmp_path / "tokens", users) as tokens:
        start_registry_with({"auth": tokens.auth_section()})
        ...
        token = tokens.issue("alice", [("repository", "alice/app", ["pull"])], exp=0)

Access lists map resource patterns (C{type:name}, with C{fnmatch}
wildcards: C{repository:alice/*}, C{registry:catalog}) to the actions
allowed there (C{*} allows every action).  L{issue} makes a token
directly, any claim or header overridden, for tests of what a registry
must refuse; L{sign_token} signs any header and claims with any key.
"""

from __future__ import annotations

import base64
import datetime
import fnmatch
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from txregistry.auth.keys import b64url_encode, jwk_thumbprint, libtrust_key_id, public_jwk

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | Ed25519PrivateKey
# (type, name, actions) of one resource, as a token's access claim lists it.
Grant = tuple[str, str, Sequence[str]]

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_CURVES: dict[str, Callable[[], ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}


# -- keys, certificates, signatures ----------------------------------------------------


def signing_key(algorithm: str) -> PrivateKey:
    """A new private key that suits the JWA C{algorithm} (RSA 2048 for RS/PS)."""
    if algorithm in _CURVES:
        return ec.generate_private_key(_CURVES[algorithm]())
    if algorithm == "EdDSA":
        return Ed25519PrivateKey.generate()
    return rsa.generate_private_key(65537, 2048)


def make_certificate(
    key: PrivateKey,
    name: str,
    issuer: tuple[x509.Certificate, PrivateKey] | None = None,
    *,
    ca: bool | None = None,
    path_length: int | None = None,
    valid_from: float | None = None,
    valid_for: float = 86400.0,
) -> x509.Certificate:
    """
    A certificate for C{key}, named C{CN=name}: self-signed, or signed by
    C{issuer} (its certificate and key); with basic constraints saying
    whether it is a C{ca} (allowing C{path_length} intermediates under
    it) unless C{ca} is L{None}; valid from C{valid_from} (a POSIX time,
    an hour ago by default) for C{valid_for} seconds.
    """
    start = time.time() - 3600 if valid_from is None else valid_from
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime.fromtimestamp(start, datetime.UTC))
        .not_valid_after(datetime.datetime.fromtimestamp(start + valid_for, datetime.UTC))
    )
    if ca is not None:
        constraints = x509.BasicConstraints(ca=ca, path_length=path_length if ca else None)
        builder = builder.add_extension(constraints, True)
    signer = key if issuer is None else issuer[1]
    digest = None if isinstance(signer, Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer, digest)


def pem(certificates: Iterable[x509.Certificate]) -> bytes:
    """C{certificates} as a PEM bundle."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def x5c(certificates: Iterable[x509.Certificate]) -> list[str]:
    """C{certificates} as a JOSE C{x5c} member (base64 DER, not base64url)."""
    return [
        base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii")
        for c in certificates
    ]


def sign_token(
    header: Mapping[str, Any], claims: Mapping[str, Any], key: PrivateKey | bytes
) -> str:
    """
    A compact JWS of C{claims}, signed by C{header["alg"]} with C{key}: a
    private key, or for C{HS*} the secret's bytes; C{none} signs nothing.
    Any algorithm goes with any key that can make it: this is for making
    tokens a registry must refuse as well as ones it must take.
    """
    algorithm = header["alg"]
    signing_input = (
        b64url_encode(json.dumps(dict(header)).encode())
        + "."
        + b64url_encode(json.dumps(dict(claims)).encode())
    ).encode("ascii")
    digest = _HASHES.get(algorithm[2:], hashes.SHA256)()
    signature: bytes
    if algorithm == "none":
        signature = b""
    elif algorithm.startswith("HS") and isinstance(key, bytes):
        signature = hmac.new(key, signing_input, getattr(hashlib, digest.name)).digest()
    elif algorithm.startswith(("RS", "PS")) and isinstance(key, rsa.RSAPrivateKey):
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if algorithm.startswith("RS")
            else padding.PSS(padding.MGF1(digest), padding.PSS.DIGEST_LENGTH)
        )
        signature = key.sign(signing_input, pad, digest)
    elif algorithm.startswith("ES") and isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(digest)))
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    elif algorithm == "EdDSA" and isinstance(key, Ed25519PrivateKey):
        signature = key.sign(signing_input)
    else:
        raise ValueError(f"cannot sign {algorithm} with {type(key).__name__}")
    return f"{signing_input.decode('ascii')}.{b64url_encode(signature)}"


# -- access lists ------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenUser:
    """
    A user of the token server.

    @ivar password: what the user's Basic credentials must carry.
    @ivar access: resource patterns (C{repository:alice/*}) to the actions
        allowed on the resources they match (C{["pull"]}, C{["*"]}).
    """

    password: str
    access: Mapping[str, Sequence[str]] = field(default_factory=dict)


def parse_scope(text: str) -> tuple[str, str, list[str]] | None:
    """
    C{type[(class)]:name:actions} as C{(type, name, actions)}; the name
    may hold colons (C{repository:host:5000/foo:pull}).  L{None} for
    anything else.
    """
    kind, _, rest = text.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        return None
    return kind.split("(")[0], name, [action for action in actions.split(",") if action]


def grant(allowed: Mapping[str, Sequence[str]], scopes: Iterable[str]) -> list[Grant]:
    """
    What a token for C{scopes} grants a holder of C{allowed}: on each
    resource, the actions asked that the patterns matching it allow (all
    of them where one allows C{*}); resources granted nothing are left out.
    """
    granted: dict[tuple[str, str], list[str]] = {}
    for text in scopes:
        parsed = parse_scope(text)
        if parsed is None:
            continue
        kind, name, actions = parsed
        permitted = {
            action
            for pattern, pattern_actions in allowed.items()
            if fnmatch.fnmatchcase(f"{kind}:{name}", pattern)
            for action in pattern_actions
        }
        listed = granted.setdefault((kind, name), [])
        for action in actions:
            if ("*" in permitted or action in permitted) and action not in listed:
                listed.append(action)
    return [(kind, name, actions) for (kind, name), actions in granted.items() if actions]


# -- the server --------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRequest:
    """One request the server answered: who asked (L{None}: anonymous) and for what."""

    account: str | None
    scopes: tuple[str, ...]
    status: int


class TokenServer:
    """
    The token server: an HTTP server on a thread, on 127.0.0.1.  Use as a
    context manager, or call L{start} and L{stop}.

    @ivar users: the users who may ask for tokens, by name.
    @ivar anonymous: the access list of requests without credentials;
        L{None} refuses them (401).
    @ivar service: the registry's name, as tokens' C{aud}.
    @ivar issuer: the server's name, as tokens' C{iss}.
    @ivar algorithm: the JWA algorithm tokens are signed with.
    @ivar key_header: how tokens name their key: C{kid} (its libtrust key
        ID, as Distribution 2.8 expects), C{thumbprint} (a C{kid} of its
        RFC 7638 thumbprint), C{x5c} (the certificate) or C{jwk}.
    @ivar lifetime: seconds a token lives.
    @ivar key: the private key tokens are signed with.
    @ivar certificate: its self-signed certificate.
    @ivar bundle_path: the PEM file of the certificate, for C{rootcertbundle}.
    @ivar requests: the token requests answered so far.
    """

    def __init__(
        self,
        workdir: Path,
        users: Mapping[str, TokenUser] | None = None,
        *,
        anonymous: Mapping[str, Sequence[str]] | None = None,
        service: str = "txregistry-tests",
        issuer: str = "txregistry-test-token-server",
        algorithm: str = "ES256",
        key_header: str = "kid",
        lifetime: int = 300,
    ) -> None:
        self.users = dict(users or {})
        self.anonymous = anonymous
        self.service = service
        self.issuer = issuer
        self.algorithm = algorithm
        self.key_header = key_header
        self.lifetime = lifetime
        self.key = signing_key(algorithm)
        self.certificate = make_certificate(self.key, issuer, valid_for=30 * 86400)
        workdir.mkdir(parents=True, exist_ok=True)
        self.bundle_path = workdir / "token-signers.pem"
        self.bundle_path.write_bytes(pem([self.certificate]))
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- running -------------------------------------------------------------------------

    def start(self) -> Self:
        """Listen on a free port of 127.0.0.1 and answer on a thread."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="token-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and close the port; again does nothing."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """C{http://127.0.0.1:PORT}, once started."""
        assert self._server is not None, "the token server is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def realm(self) -> str:
        """Where clients ask for tokens: the registry's C{realm}."""
        return f"{self.url}/token"

    def auth_section(self, **options: Any) -> dict[str, Any]:
        """
        The registry's C{auth} config section for this server, C{options}
        added or replacing its own.
        """
        token = {
            "realm": self.realm,
            "service": self.service,
            "issuer": self.issuer,
            "rootcertbundle": str(self.bundle_path),
            **options,
        }
        return {"token": token}

    # -- tokens --------------------------------------------------------------------------

    def key_id(self) -> dict[str, Any]:
        """The header members that name the signing key, as L{key_header} says."""
        public = self.key.public_key()
        if self.key_header == "x5c":
            return {"x5c": x5c([self.certificate])}
        if self.key_header == "jwk":
            return {"jwk": public_jwk(public)}
        if self.key_header == "thumbprint":
            return {"kid": jwk_thumbprint(public)}
        return {"kid": libtrust_key_id(public)}

    def issue(
        self,
        subject: str,
        access: Iterable[Grant],
        *,
        header: Mapping[str, Any] | None = None,
        key: PrivateKey | bytes | None = None,
        **claims: Any,
    ) -> str:
        """
        A token for C{subject} granting C{access}, signed with the
        server's key (or C{key}); C{header} members and C{claims} are
        added or replace the server's (a claim of L{None} is left out):
        C{issue("alice", [], exp=0)} is expired.
        """
        now = int(time.time())
        document: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.lifetime,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": [
                {"type": kind, "name": name, "actions": list(actions)}
                for kind, name, actions in access
            ],
        }
        document.update(claims)
        document = {name: value for name, value in document.items() if value is not None}
        members = {"typ": "JWT", "alg": self.algorithm, **self.key_id(), **(header or {})}
        return sign_token(members, document, self.key if key is None else key)

    def answer(self, account: str | None, scopes: list[str]) -> dict[str, Any]:
        """The JSON answer to C{account}'s request for C{scopes}."""
        allowed = self.anonymous if account is None else self.users[account].access
        token = self.issue(account or "", grant(allowed or {}, scopes))
        issued = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "token": token,
            "access_token": token,
            "expires_in": self.lifetime,
            "issued_at": issued,
        }

    def authenticate(self, authorization: str | None) -> tuple[bool, str | None]:
        """
        Whether the C{Authorization} header's value lets a request in, and
        as whom (L{None}: anonymous).
        """
        if not authorization:
            return self.anonymous is not None, None
        scheme, _, encoded = authorization.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode("utf-8").partition(":")
        except ValueError:
            return False, None
        known = self.users.get(user)
        if scheme.lower() != "basic" or known is None:
            return False, None
        return hmac.compare_digest(known.password, password), user

    def record(self, account: str | None, scopes: list[str], status: int) -> None:
        """Keep one answered request for L{requests}."""
        with self._lock:
            self.requests.append(TokenRequest(account, tuple(scopes), status))


def _handler_for(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class TokenRequestHandler(BaseHTTPRequestHandler):
        """Answers C{GET /token} for L{TokenServer}; 404 for anything else."""

        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != "/token":
                self._send(HTTPStatus.NOT_FOUND, {"error": "not found"})
                return
            query = parse_qs(parts.query)
            scopes = [one for value in query.get("scope", []) for one in value.split()]
            allowed, account = server.authenticate(self.headers.get("Authorization"))
            if not allowed:
                server.record(account, scopes, HTTPStatus.UNAUTHORIZED)
                self._send(HTTPStatus.UNAUTHORIZED, {"error": "invalid credentials"})
                return
            if query.get("service", [server.service]) != [server.service]:
                server.record(account, scopes, HTTPStatus.BAD_REQUEST)
                self._send(HTTPStatus.BAD_REQUEST, {"error": "unknown service"})
                return
            server.record(account, scopes, HTTPStatus.OK)
            self._send(HTTPStatus.OK, server.answer(account, scopes))

        def _send(self, status: HTTPStatus, document: Mapping[str, Any]) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if status == HTTPStatus.UNAUTHORIZED:
                self.send_header("WWW-Authenticate", 'Basic realm="token server"')
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Say nothing: the requests are in L{TokenServer.requests}."""

    return TokenRequestHandler
