# -*- test-case-name: tests.test_auth_token -*-
"""
Signed JSON Web Tokens as Distribution's token access controller checks
them (C{registry/auth/token/token.go}): the compact JWS form only, one
signature, an algorithm from an allowed list, and a signing key chosen as
Distribution chooses it (L{TrustedKeys.signing_key}):

  1. an C{x5c} header: a certificate chain that must lead to one of the
     root certificates; the key is the first certificate's;
  2. else a C{jwk} header: with its own C{x5c}, the same check, and the
     key must be the chain's; without, it must name a trusted key (by its
     C{kid}, libtrust key ID or RFC 7638 thumbprint), and the trusted
     key is used, never the one the token carries;
  3. else a C{kid} header naming a trusted key: the libtrust key ID
     (Distribution 2.8) or RFC 7638 thumbprint (Distribution 3) of a root
     certificate's key, or the C{kid} of a key in the JWKS file.

Only public-key algorithms verify: C{none} has no key, and no trusted key
can be an HMAC secret (the classic attack signs C{HS256} with the public
key as the secret).  Keys and chains are L{txregistry.auth.keys}'s.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from txregistry.auth.keys import (
    PublicKey,
    UntrustedChain,
    b64url_decode,
    certificate_key,
    jwk_thumbprint,
    libtrust_key_id,
    public_key_from_jwk,
    spki,
    verify_chain,
)

# Every name Distribution 3 accepts in C{signingalgorithms}; the HMAC ones
# are accepted there too, but no token signed with them ever verifies.
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
ALGORITHMS = PUBLIC_KEY_ALGORITHMS | HMAC_ALGORITHMS

# Longer chains than token servers send (a leaf and an intermediate or
# two); the bound keeps a hostile header from costing more than a few
# dozen signature checks.
MAX_CHAIN = 5
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}


class InvalidToken(Exception):
    """
    A token that is malformed or does not verify.  The message says why,
    for the log; it never quotes the token.
    """


# -- parsing -----------------------------------------------------------------------


@dataclass(frozen=True)
class SignedToken:
    """
    A token in JWS compact form, parsed but not verified.

    @ivar header: the protected header.
    @ivar claims: the payload, a JSON object.
    @ivar signing_input: what the signature signs (C{header.payload}).
    @ivar signature: the signature's bytes.
    """

    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    signing_input: bytes
    signature: bytes

    @classmethod
    def parse(cls, raw: str) -> SignedToken:
        """
        @raise InvalidToken: not three base64url parts, or a header or
            payload that is not a JSON object.
        """
        parts = raw.split(".")
        if len(parts) != 3:
            raise InvalidToken(f"malformed token: {len(parts)} parts, not 3")
        try:
            header, claims = (json.loads(b64url_decode(part)) for part in parts[:2])
            signature = b64url_decode(parts[2])
        except (ValueError, RecursionError) as error:
            raise InvalidToken(f"malformed token: {error}") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise InvalidToken("malformed token: header and claims must be JSON objects")
        return cls(header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


# -- signatures --------------------------------------------------------------------


def verify_signature(algorithm: str, key: PublicKey, data: bytes, signature: bytes) -> None:
    """
    Check C{signature} of C{data} with C{key} by the JWA C{algorithm}.

    @raise InvalidToken: the algorithm is not a public-key one, does not
        suit the key (an RSA algorithm with an EC key, C{ES256} with a
        P-384 key), or the signature does not verify.
    """
    if algorithm not in PUBLIC_KEY_ALGORITHMS:
        raise InvalidToken(f"algorithm {algorithm!r} cannot be verified with a public key")
    digest = _HASHES.get(algorithm[2:], hashes.SHA256)()
    try:
        if algorithm[:2] in ("RS", "PS") and isinstance(key, rsa.RSAPublicKey):
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if algorithm[:2] == "RS"
                else padding.PSS(padding.MGF1(digest), padding.PSS.AUTO)
            )
            key.verify(signature, data, pad, digest)
        elif algorithm in _CURVES and isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(key.curve, _CURVES[algorithm]):
                raise InvalidToken(f"{algorithm} does not suit a {key.curve.name} key")
            size = (key.curve.key_size + 7) // 8
            if len(signature) != 2 * size:
                raise InvalidToken(f"{algorithm} signature of {len(signature)} bytes")
            r, s = (int.from_bytes(signature[i : i + size], "big") for i in (0, size))
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(digest))
        elif algorithm == "EdDSA" and isinstance(key, Ed25519PublicKey):
            key.verify(signature, data)
        else:
            raise InvalidToken(f"{algorithm} does not suit the signing key")
    except (InvalidSignature, ValueError):
        raise InvalidToken("signature does not verify") from None


def parse_x5c(value: Any) -> list[x509.Certificate]:
    """
    An C{x5c} member: a list of base64 (not base64url) DER certificates.

    @raise InvalidToken: anything else, or more than L{MAX_CHAIN}.
    """
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidToken("x5c is not a list of certificates")
    if len(value) > MAX_CHAIN:
        raise InvalidToken(f"x5c of {len(value)} certificates")
    try:
        return [x509.load_der_x509_certificate(base64.b64decode(v, validate=True)) for v in value]
    except (ValueError, binascii.Error) as error:
        raise InvalidToken(f"x5c certificate does not parse: {error}") from None


def _certified_key(x5c: Any, roots: Sequence[x509.Certificate], now: float) -> PublicKey:
    """The key of the first certificate of C{x5c}, once its chain leads to one of C{roots}."""
    try:
        return verify_chain(parse_x5c(x5c), roots, now)
    except UntrustedChain as error:
        raise InvalidToken(str(error)) from None


# -- which key signed the token ------------------------------------------------------


@dataclass(frozen=True)
class TrustedKeys:
    """
    What tokens may be signed with: keys certified by the root
    certificates, and the keys listed by ID.

    @ivar roots: the root certificates (C{rootcertbundle}).
    @ivar by_id: trusted keys by the C{kid} a token names them by.
    """

    roots: tuple[x509.Certificate, ...]
    by_id: Mapping[str, PublicKey]

    @classmethod
    def build(cls, roots: Iterable[x509.Certificate], keys: Mapping[str, PublicKey]) -> TrustedKeys:
        """
        Trust C{roots}, their keys by libtrust key ID and RFC 7638
        thumbprint, and C{keys} (a JWKS file's) by their C{kid}.
        """
        roots = tuple(roots)
        by_id: dict[str, PublicKey] = {}
        for root in roots:
            key = certificate_key(root)
            if key is not None:
                by_id[libtrust_key_id(key)] = key
                by_id[jwk_thumbprint(key)] = key
        by_id.update(keys)
        return cls(roots, by_id)

    def signing_key(self, header: Mapping[str, Any], now: float) -> PublicKey:
        """
        The trusted key a token with C{header} must be signed with.

        @raise InvalidToken: the header names no trusted key.
        """
        if "x5c" in header:
            return _certified_key(header["x5c"], self.roots, now)
        if "jwk" in header:
            return self._embedded_key(header["jwk"], now)
        kid = header.get("kid")
        if isinstance(kid, str) and kid:
            key = self.by_id.get(kid)
            if key is None:
                raise InvalidToken("token signed by an untrusted key (kid)")
            return key
        raise InvalidToken("token names no signing key (no x5c, jwk or kid)")

    def _embedded_key(self, jwk: Any, now: float) -> PublicKey:
        try:
            key = public_key_from_jwk(jwk)
        except ValueError as error:
            raise InvalidToken(f"jwk header: {error}") from None
        if "x5c" in jwk:
            certified = _certified_key(jwk["x5c"], self.roots, now)
            if spki(certified) != spki(key):
                raise InvalidToken("jwk header is not the key of its certificate chain")
            return certified
        for name in (jwk.get("kid"), libtrust_key_id(key), jwk_thumbprint(key)):
            if isinstance(name, str) and name in self.by_id:
                return self.by_id[name]
        raise InvalidToken("token signed by an untrusted key (jwk)")


def verify(
    raw: str, trusted: TrustedKeys, algorithms: frozenset[str], now: float
) -> Mapping[str, Any]:
    """
    The claims of the compact JWS C{raw}, once its signature is checked:
    by an algorithm among C{algorithms}, with the key L{TrustedKeys}
    chooses.  The claims themselves are not checked.

    @raise InvalidToken: it is malformed or does not verify.
    """
    token = SignedToken.parse(raw)
    algorithm = token.header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in algorithms:
        raise InvalidToken(f"signing algorithm {algorithm!r} is not accepted")
    if "crit" in token.header:
        raise InvalidToken("critical header extensions are not understood")
    if not token.signature:
        raise InvalidToken("token has no signature")
    key = trusted.signing_key(token.header, now)
    verify_signature(algorithm, key, token.signing_input, token.signature)
    return token.claims
