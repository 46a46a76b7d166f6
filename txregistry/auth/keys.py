# -*- test-case-name: tests.test_auth_token -*-
"""
Public keys as tokens name them, and certificate chains that vouch for
them: a key as a JWK and from one (RFC 7517, 7518, 8037), its libtrust key
ID (Distribution 2.8's C{kid}) and RFC 7638 thumbprint (Distribution 3's),
and the check that an C{x5c} chain leads to a trusted root.

Chains are checked as Go's C{x509.Verify} checks them for Distribution,
with any key usage: issuer names, signatures (none by SHA-1 or MD5),
validity times, critical extensions, and C{CA} and path length of every
issuer (a version 3 root that signs others must be a CA too; one the
chain starts with is trusted as it is).

Checks run on the reactor: measured, a token naming its key by C{kid}
verifies in 30-100 µs, one with a two-certificate C{x5c} chain in
170-360 µs (RSA to Ed25519), the cost of parsing a small manifest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | Ed25519PublicKey

# Go refuses certificate signatures made with these.
_WEAK_HASHES = (hashes.SHA1, hashes.MD5)
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
JWK_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
}


class UntrustedChain(Exception):
    """A certificate chain that does not lead to a trusted root."""


def b64url_decode(text: str) -> bytes:
    """Unpadded base64url (RFC 7515), strictly: no padding, no other alphabet."""
    if not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 7515)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# -- keys --------------------------------------------------------------------------


def spki(key: PublicKey) -> bytes:
    """The key's DER SubjectPublicKeyInfo: what tells two keys apart."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def libtrust_key_id(key: PublicKey) -> str:
    """
    The key ID Distribution 2.8 trusts (libtrust's): the SHA-256 of the
    key's DER SubjectPublicKeyInfo cut to 240 bits, in base32, as twelve
    groups of four (C{ABCD:EFGH:...}).
    """
    text = base64.b32encode(hashlib.sha256(spki(key)).digest()[:30]).decode("ascii")
    return ":".join(text[i : i + 4] for i in range(0, len(text), 4))


def jwk_thumbprint(key: PublicKey) -> str:
    """The RFC 7638 thumbprint (SHA-256) of the key, as Distribution 3 names keys."""
    members = public_jwk(key)
    required = {
        "RSA": ("e", "kty", "n"),
        "EC": ("crv", "kty", "x", "y"),
        "OKP": ("crv", "kty", "x"),
    }
    canonical = {name: members[name] for name in required[members["kty"]]}
    text = json.dumps(canonical, separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(text.encode("ascii")).digest())


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The key as a JWK (RFC 7517/7518/8037) of its public members."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"kty": "RSA", "n": _b64_int(numbers.n), "e": _b64_int(numbers.e)}
    if isinstance(key, ec.EllipticCurvePublicKey):
        [crv] = [name for name, curve in JWK_CURVES.items() if isinstance(key.curve, curve)]
        size = (key.curve.key_size + 7) // 8
        point = key.public_numbers()
        return {
            "kty": "EC",
            "crv": crv,
            "x": b64url_encode(point.x.to_bytes(size, "big")),
            "y": b64url_encode(point.y.to_bytes(size, "big")),
        }
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}


def _b64_int(value: int) -> str:
    return b64url_encode(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def public_key_from_jwk(jwk: Any) -> PublicKey:
    """
    The public key a JWK describes: RSA, EC on P-256/384/521, or Ed25519
    (private members, if any, are ignored).

    @raise ValueError: anything else, or a malformed member.
    """
    if not isinstance(jwk, Mapping):
        raise ValueError("a JWK must be a JSON object")
    kty = jwk.get("kty")
    try:
        if kty == "RSA":
            n, e = (int.from_bytes(b64url_decode(jwk[name]), "big") for name in ("n", "e"))
            return rsa.RSAPublicNumbers(e, n).public_key()
        if kty == "EC" and jwk.get("crv") in JWK_CURVES:
            x, y = (int.from_bytes(b64url_decode(jwk[name]), "big") for name in ("x", "y"))
            curve = JWK_CURVES[jwk["crv"]]()
            return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
        if kty == "OKP" and jwk.get("crv") == "Ed25519":
            return Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))
    except (KeyError, TypeError, ValueError, UnsupportedAlgorithm) as error:
        raise ValueError(f"malformed {kty} key: {error or type(error).__name__}") from None
    raise ValueError(f"unsupported key type {kty!r} (crv {jwk.get('crv')!r})")


def certificate_key(certificate: x509.Certificate) -> PublicKey | None:
    """The certificate's key, if it is one tokens can be signed with."""
    try:
        key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        supported = any(isinstance(key.curve, curve) for curve in JWK_CURVES.values())
        return key if supported else None
    return key if isinstance(key, (rsa.RSAPublicKey, Ed25519PublicKey)) else None


# -- certificate chains ------------------------------------------------------------


def verify_chain(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], now: float
) -> PublicKey:
    """
    The key of C{chain[0]}, once a path from it to one of C{roots} is
    found through the rest of C{chain} (in any order).

    @raise UntrustedChain: no such path, or the key is of no usable type.
    """
    search = _PathSearch(roots, datetime.fromtimestamp(now, UTC))
    try:
        leaf = chain[0]
        found = search.current(leaf) and any(
            search.signed_down(path) for path in search.paths([leaf], list(chain[1:]))
        )
        key = certificate_key(leaf) if found else None
    except (ValueError, UnsupportedAlgorithm) as error:  # a certificate parsed lazily
        raise UntrustedChain(f"certificate chain does not parse: {error}") from None
    if not found:
        raise UntrustedChain("certificate chain does not lead to a trusted root")
    if key is None:
        raise UntrustedChain("certificate key of an unsupported type")
    return key


class _PathSearch:
    """
    A search for a path from a certificate up to a root: first by what
    costs nothing (names, validity, constraints), then by signatures from
    the root down, so that a chain of made-up certificates fails at its
    top, on a signature checked with a trusted key, before any key it
    brings is used.  Each signature is checked once however many paths
    share it.
    """

    def __init__(self, roots: Sequence[x509.Certificate], when: datetime) -> None:
        self.roots = roots
        self.when = when
        self._issued: dict[tuple[int, int], bool] = {}

    def paths(
        self, path: list[x509.Certificate], intermediates: list[x509.Certificate]
    ) -> Iterator[list[x509.Certificate]]:
        """
        The ways C{path} (a leaf and intermediates over it) extends to a
        root through C{intermediates}, signatures unchecked.
        """
        certificate, below = path[-1], len(path) - 1
        if certificate in self.roots:
            yield path
            return
        for root in self.roots:
            if root.subject == certificate.issuer and self.may_issue(root, below):
                yield [*path, root]
        for index, issuer in enumerate(intermediates):
            if issuer.subject == certificate.issuer and self.may_issue(issuer, below):
                rest = intermediates[:index] + intermediates[index + 1 :]
                yield from self.paths([*path, issuer], rest)

    def signed_down(self, path: list[x509.Certificate]) -> bool:
        """Whether each certificate of C{path} signed the one below it, checked from the top."""
        return all(self.issued(path[i], path[i + 1]) for i in reversed(range(len(path) - 1)))

    def may_issue(self, issuer: x509.Certificate, below: int) -> bool:
        """
        Whether C{issuer} may sign certificates with C{below} intermediates
        under it, now: as Go's C{CheckSignatureFrom}, a version 3
        certificate must say it is a CA (a root too); and its path length.
        """
        constraints = _constraints(issuer)
        if constraints is None:
            allowed = issuer.version != x509.Version.v3
        else:
            allowed = constraints.ca and (
                constraints.path_length is None or below <= constraints.path_length
            )
        return allowed and self.current(issuer)

    def current(self, certificate: x509.Certificate) -> bool:
        """Whether C{certificate} is valid now, and has no critical extension Go would refuse."""
        if any(
            extension.critical and isinstance(extension.value, x509.UnrecognizedExtension)
            for extension in certificate.extensions
        ):
            return False
        return certificate.not_valid_before_utc <= self.when <= certificate.not_valid_after_utc

    def issued(self, certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
        """Whether C{issuer} signed C{certificate} (by a hash Go accepts)."""
        pair = (id(certificate), id(issuer))
        if pair not in self._issued:
            self._issued[pair] = _signed_by(certificate, issuer)
        return self._issued[pair]


def _signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        if isinstance(certificate.signature_hash_algorithm, _WEAK_HASHES):
            return False
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _constraints(certificate: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None
