# -*- test-case-name: tests.test_auth_token -*-
"""
Distribution's C{token} access controller (C{registry/auth/token}): a
client brings a bearer token from a token server (the Docker token spec),
and the registry checks it alone, with no call to anyone:

  - its signature (L{txregistry.auth.jwt}), by an allowed algorithm, with
    a key the root certificates or the JWKS file vouch for;
  - C{iss} is the configured issuer, C{aud} names the service, and it is
    neither expired (C{exp}) nor early (C{nbf}), each within 60 s;
  - its C{access} claim grants every action the request needs.

    auth:
      token:
        realm: https://auth.example.com/token
        service: registry.example.com
        issuer: auth.example.com
        rootcertbundle: /etc/registry/token-signers.pem

Options, as Distribution's: C{realm}, C{service}, C{issuer} (required);
C{rootcertbundle} and (Distribution 3) C{jwks}, at least one; and from
Distribution 3, C{autoredirect} (the realm becomes C{https://<the
request's Host>/auth/token}, the scheme taken from
C{X-Forwarded-Proto} if sent), C{autoredirectpath} and
C{signingalgorithms}.

A request that does not pass gets 401 with Distribution's challenge:
C{Bearer realm=...,service=...,scope=...}, with C{error="invalid_token"}
for a token that does not verify and C{error="insufficient_scope"} for one
that grants too little.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryptography import x509
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from txregistry.auth.challenges import bearer_challenge, unauthorized
from txregistry.auth.jwt import (
    ALGORITHMS,
    PUBLIC_KEY_ALGORITHMS,
    InvalidToken,
    TrustedKeys,
    verify,
)
from txregistry.auth.keys import PublicKey, public_key_from_jwk
from txregistry.config import ConfigError, check_parameters
from txregistry.errors import RegistryError
from txregistry.interfaces import (
    Access,
    AuthRequest,
    IAccessController,
    IAccessControllerFactory,
    Identity,
)

# Distribution's allowance for clocks that disagree, both ways.
LEEWAY = 60
DEFAULT_AUTOREDIRECT_PATH = "/auth/token"
_INT64 = 2**63

_log = Logger()


class InsufficientScope(Exception):
    """A valid token that does not grant everything the request needs."""


@implementer(IAccessController)
class TokenAccessController:
    """
    Lets in requests whose bearer token verifies and grants what they need.

    @ivar realm: where clients get tokens.
    @ivar service: the registry's name in tokens' C{aud}.
    @ivar issuer: the token server's name in tokens' C{iss}.
    @ivar trusted: the keys tokens may be signed with.
    @ivar algorithms: the signing algorithms accepted.
    @ivar autoredirect_path: when set, the realm is this path on the
        host the request was sent to.
    """

    def __init__(
        self,
        realm: str,
        service: str,
        issuer: str,
        trusted: TrustedKeys,
        algorithms: frozenset[str] = PUBLIC_KEY_ALGORITHMS,
        autoredirect_path: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.realm = realm
        self.service = service
        self.issuer = issuer
        self.trusted = trusted
        self.algorithms = algorithms
        self.autoredirect_path = autoredirect_path
        self._clock = clock

    def authorized(self, request: AuthRequest, access: Sequence[Access]) -> Deferred[Identity]:
        """See L{IAccessController.authorized}."""
        raw = _bearer_token(request)
        if raw is None:
            return fail(self._challenge(request, access, None))
        try:
            claims = self.verified_claims(raw)
            _check_access(claims, access)
        except InvalidToken as error:
            _log.info("Refused a bearer token: {reason}", reason=str(error))
            return fail(self._challenge(request, access, "invalid_token"))
        except InsufficientScope as error:
            _log.info("Refused a bearer token: {reason}", reason=str(error))
            return fail(self._challenge(request, access, "insufficient_scope"))
        subject = claims.get("sub")
        return succeed(Identity(subject or None))

    def verified_claims(self, raw: str) -> Mapping[str, Any]:
        """
        The claims of the token C{raw}, once it verifies and is meant for
        this registry now.

        @raise InvalidToken: it does not.
        """
        now = self._clock()
        claims = verify(raw, self.trusted, self.algorithms, now)
        issuer = _claim(claims, "iss", str, "")
        if issuer != self.issuer:
            raise InvalidToken(f"token from untrusted issuer {_shown(issuer)}")
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise InvalidToken("token has a malformed aud claim")
        if self.service not in audiences:
            raise InvalidToken(f"token intended for another audience: {_shown(audience)}")
        for name, kind in (("sub", str), ("jti", str), ("iat", int)):
            _claim(claims, name, kind, None)  # as Distribution, refuse them malformed
        if now > _claim(claims, "exp", int, 0) + LEEWAY:
            raise InvalidToken("token expired")
        if now < _claim(claims, "nbf", int, 0) - LEEWAY:
            raise InvalidToken("token not valid yet")
        return claims

    def _challenge(
        self, request: AuthRequest, access: Sequence[Access], error: str | None
    ) -> RegistryError:
        """The 401 for C{request}, with Distribution's C{WWW-Authenticate}."""
        return unauthorized(
            access, bearer_challenge(self._realm(request), self.service, access, error)
        )

    def _realm(self, request: AuthRequest) -> str:
        if self.autoredirect_path is None:
            return self.realm
        scheme = _header(request, b"X-Forwarded-Proto") or "https"
        path = self.autoredirect_path
        host = _header(request, b"Host")
        if path and not path.startswith("/") and host:
            path = "/" + path
        return f"{scheme}://{host}{path}"


def _header(request: AuthRequest, name: bytes) -> str:
    """The first value of header C{name}, or an empty string (as Go's C{Header.Get})."""
    values = request.headers.getRawHeaders(name)
    return values[0].decode("latin-1") if values else ""


def _bearer_token(request: AuthRequest) -> str | None:
    """
    The token of an C{Authorization: Bearer <token>} header, split as
    Distribution 2.8 splits it: two words, whatever the scheme's case (an
    empty token is a malformed one, not none).
    """
    words = _header(request, b"Authorization").split(" ")
    if len(words) != 2 or words[0].lower() != "bearer":
        return None
    return words[1]


def _claim(claims: Mapping[str, Any], name: str, kind: type[Any], default: Any) -> Any:
    """
    The claim C{name}, C{default} when missing or null.

    @raise InvalidToken: it is not a C{kind} (an integer in int64 range,
        for times), as Distribution fails to decode it.
    """
    value: Any = claims.get(name)
    if value is None:
        return default
    if not isinstance(value, kind) or (
        kind is int and (isinstance(value, bool) or not -_INT64 <= value < _INT64)
    ):
        raise InvalidToken(f"token has a malformed {name} claim")
    return value


def _shown(value: Any) -> str:
    """A claim's value for a log line: as JSON, cut short."""
    text = json.dumps(value)
    return text if len(text) <= 100 else text[:97] + "..."


def _check_access(claims: Mapping[str, Any], access: Sequence[Access]) -> None:
    """
    @raise InsufficientScope: the C{access} claim does not grant each of
        C{access} (an action, or C{*}, on the resource's type and name).
    @raise InvalidToken: the claim is malformed.
    """
    granted: dict[tuple[str, str], set[str]] = {}
    entries = claims.get("access") or []
    if not isinstance(entries, list):
        raise InvalidToken("token has a malformed access claim")
    for entry in entries:
        if not isinstance(entry, dict):
            raise InvalidToken("token has a malformed access claim")
        kind, name = _claim(entry, "type", str, ""), _claim(entry, "name", str, "")
        actions = _claim(entry, "actions", list, [])
        if not all(isinstance(action, str) for action in actions):
            raise InvalidToken("token has a malformed access claim")
        granted.setdefault((kind, name), set()).update(actions)
    for one in access:
        actions = granted.get((one.type, one.name), set())
        if "*" not in actions and one.action not in actions:
            raise InsufficientScope(f"token does not grant {one.type}:{one.name}:{one.action}")


# -- configuration -------------------------------------------------------------------

_SECTION = "auth.token"
_OPTIONS: dict[str, Any] = {
    "realm": str,
    "service": str,
    "issuer": str,
    "rootcertbundle": str,
    "jwks": str,
    "autoredirect": bool,
    "autoredirectpath": str,
}


@implementer(IAccessControllerFactory)
class TokenAccessControllerFactory:
    """Makes L{TokenAccessController}s from Distribution's options."""

    name = "token"

    def create(self, options: Mapping[str, Any]) -> IAccessController:
        """See L{IAccessControllerFactory.create}."""
        check_parameters(
            _SECTION, {k: v for k, v in options.items() if k != "signingalgorithms"}, _OPTIONS
        )
        for key in ("realm", "service", "issuer"):
            if not options.get(key):
                raise ConfigError(f"{_SECTION}.{key}", "is required")
        roots = _root_certificates(options.get("rootcertbundle"))
        keys = _jwks(options.get("jwks"))
        if not roots and not keys:
            raise ConfigError(
                f"{_SECTION}.rootcertbundle",
                "is required (or jwks): the keys tokens are signed with",
            )
        autoredirect_path = None
        if options.get("autoredirect"):
            autoredirect_path = options.get("autoredirectpath") or DEFAULT_AUTOREDIRECT_PATH
        return TokenAccessController(
            options["realm"],
            options["service"],
            options["issuer"],
            TrustedKeys.build(roots, keys),
            _algorithms(options.get("signingalgorithms")),
            autoredirect_path,
        )


def _read(key: str, path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise ConfigError(f"{_SECTION}.{key}", f"cannot read {path}: {error.strerror}") from None


def _root_certificates(path: str | None) -> list[x509.Certificate]:
    """The certificates of a PEM bundle; other PEM blocks are skipped, as Distribution does."""
    if not path:
        return []
    try:
        return x509.load_pem_x509_certificates(_read("rootcertbundle", path))
    except ValueError:
        raise ConfigError(
            f"{_SECTION}.rootcertbundle", f"{path} holds no PEM certificate that parses"
        ) from None


def _jwks(path: str | None) -> dict[str, PublicKey]:
    """The public keys of a JWKS file (RFC 7517), by C{kid}."""
    if not path:
        return {}
    key = f"{_SECTION}.jwks"
    try:
        document = json.loads(_read("jwks", path))
        entries = document["keys"]
        if not isinstance(entries, list):
            raise TypeError("keys is not a list")
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(key, f"{path} is not a JWK set: {error}") from None
    keys: dict[str, PublicKey] = {}
    for index, entry in enumerate(entries):
        try:
            public = public_key_from_jwk(entry)
        except ValueError as error:
            raise ConfigError(key, f"{path}: keys[{index}]: {error}") from None
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ConfigError(key, f"{path}: keys[{index}] has no kid, which tokens name it by")
        keys[kid] = public
    return keys


def _algorithms(names: Any) -> frozenset[str]:
    """
    The algorithms C{signingalgorithms} names: Distribution 3's names,
    its public-key ones when none are given.  HMAC names are taken (a
    Distribution 3 config may list them) but verify nothing: no trusted
    key is a shared secret.
    """
    key = f"{_SECTION}.signingalgorithms"
    if names is None:
        return PUBLIC_KEY_ALGORITHMS
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ConfigError(key, "must be a list of signing algorithms")
    for name in names:
        if name not in ALGORITHMS:
            raise ConfigError(key, f"unsupported signing algorithm: {name}")
    return frozenset(names) or PUBLIC_KEY_ALGORITHMS
