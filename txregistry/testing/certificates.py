# -*- test-case-name: tests.test_tls -*-
"""
Certificates for testing TLS (C{http.tls}): a certificate authority of
one's own, and the server and client certificates it signs, made with
C{cryptography} and written as PEM files.

    ca = CertificateAuthority.create("test CA")
    ca.write(folder / "ca.crt")
    server = ca.issue(folder, "server", hosts=["localhost", "127.0.0.1"])
    client = ca.issue(folder, "client", client=True)
    # server.certificate, server.key: the paths of the PEM files

Keys are ECDSA on P-256: quick to make, and understood by OpenSSL, Go's
crypto/tls (skopeo, podman) and Python's ssl alike.  Certificates carry
what strict verifiers look for (key identifiers, key usages, SANs), are
valid from an hour ago, to allow for clocks that differ, and for a year.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=365)
_CLOCK_SKEW = datetime.timedelta(hours=1)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "txregistry tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _subject_alternative_names(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """C{key} as an unencrypted PKCS#8 PEM block."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificate_pem(certificate: x509.Certificate) -> bytes:
    """C{certificate} as a PEM block."""
    return certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class IssuedCertificate:
    """
    A certificate and its key, in memory and as PEM files.

    @ivar certificate: the path of the certificate's PEM file.
    @ivar key: the path of the key's PEM file.
    """

    certificate: Path
    key: Path
    x509: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA certificate and its key, which sign the others."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, common_name: str = "txregistry test CA") -> CertificateAuthority:
        """A new root CA, self-signed, with a new key."""
        return cls._make(common_name, None)

    def intermediate(self, common_name: str) -> CertificateAuthority:
        """A new CA that this one signs (a server then sends it with its chain)."""
        return self._make(common_name, self)

    @classmethod
    def _make(cls, common_name: str, issuer: CertificateAuthority | None) -> CertificateAuthority:
        key = _new_key()
        name = _name(common_name)
        signing_key = key if issuer is None else issuer.key
        issuer_name = name if issuer is None else issuer.certificate.subject
        builder = _builder(name, issuer_name, key, ca=True)
        if issuer is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                critical=False,
            )
        return cls(builder.sign(signing_key, hashes.SHA256()), key)

    def write(self, path: Path) -> Path:
        """Write the CA's certificate (not its key) to C{path}; C{path}."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(certificate_pem(self.certificate))
        return path

    def issue(
        self,
        folder: Path,
        name: str,
        hosts: Sequence[str] = ("localhost", "127.0.0.1"),
        *,
        client: bool = False,
    ) -> IssuedCertificate:
        """
        Sign a new certificate for a new key, and write them to
        C{folder/NAME.crt} and C{folder/NAME.key}.

        @param hosts: the DNS names and IP addresses a server certificate
            is good for (its subject alternative names).
        @param client: make a client certificate (for mutual TLS) instead,
            with C{name} as its common name.
        """
        key = _new_key()
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            _builder(_name(name), self.certificate.subject, key, ca=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if not client:
            builder = builder.add_extension(_subject_alternative_names(hosts), critical=False)
        certificate = builder.sign(self.key, hashes.SHA256())
        folder.mkdir(parents=True, exist_ok=True)
        certificate_path = folder / f"{name}.crt"
        key_path = folder / f"{name}.key"
        certificate_path.write_bytes(certificate_pem(certificate))
        key_path.write_bytes(key_pem(key))
        key_path.chmod(0o600)
        return IssuedCertificate(certificate_path, key_path, certificate, key)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, *, ca: bool
) -> x509.CertificateBuilder:
    """What every certificate here has: names, key, validity, constraints, usage."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
