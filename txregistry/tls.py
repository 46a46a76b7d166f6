# -*- test-case-name: tests.test_tls -*-
"""
Serving over TLS, as C{http.tls} says and as Distribution does: the
certificate and its chain, the minimum version, the cipher suites, client
certificates required with C{clientcas}, and Go's 400 for a plain-HTTP
request on the TLS port.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from OpenSSL import SSL
from OpenSSL.crypto import X509, PKey
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.internet.ssl import (
    AcceptableCiphers,
    Certificate,
    CertificateOptions,
    TLSVersion,
    trustRootFromCertificates,
)
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from zope.interface import implementer

from txregistry.config import TLS_CIPHER_SUITES, ConfigError, TLSConfig

_TLS_VERSIONS = {
    "tls1.0": TLSVersion.TLSv1_0,
    "tls1.1": TLSVersion.TLSv1_1,
    "tls1.2": TLSVersion.TLSv1_2,
    "tls1.3": TLSVersion.TLSv1_3,
}


def _read(key: str, path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise ConfigError(key, f"cannot read {path}: {error.strerror}") from None


def _certificates(key: str, path: str) -> list[x509.Certificate]:
    """Every certificate of the PEM file at C{path}, in order."""
    try:
        return x509.load_pem_x509_certificates(_read(key, path))
    except ValueError:
        raise ConfigError(key, f"{path} holds no certificate in PEM format") from None


# The kinds of key Go's crypto/tls (so Distribution) serves with.
_TLSPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _private_key(key: str, path: str) -> _TLSPrivateKey:
    """The private key in the PEM file at C{path}."""
    try:
        private_key = serialization.load_pem_private_key(_read(key, path), password=None)
    except TypeError:
        raise ConfigError(key, f"{path} is encrypted; give the key unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(key, f"{path} holds no private key in PEM format") from None
    if not isinstance(private_key, _TLSPrivateKey):
        raise ConfigError(
            key, f"{path} holds a key of a kind TLS does not use (RSA, ECDSA, Ed25519)"
        )
    return private_key


def _public_bytes(certificate_or_key: x509.Certificate | _TLSPrivateKey) -> bytes:
    public = certificate_or_key.public_key()
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def tls_options(tls: TLSConfig) -> CertificateOptions:
    """
    The TLS settings of C{http.tls}, as Distribution applies them: the
    certificate and its chain, the minimum version, the cipher suites for
    TLS 1.2 and below, and with C{clientcas}, client certificates required,
    signed by one of those CAs (whose names are sent to clients, so that
    they can choose among their certificates).

    @raise ConfigError: naming the key whose file cannot be read, holds no
        PEM certificate or key, or whose key does not match the certificate.
    """
    chain = _certificates("http.tls.certificate", tls.certificate)
    private_key = _private_key("http.tls.key", tls.key)
    if _public_bytes(private_key) != _public_bytes(chain[0]):
        raise ConfigError(
            "http.tls.key", f"{tls.key} does not match the certificate in {tls.certificate}"
        )
    authorities = [
        certificate
        for index, path in enumerate(tls.client_cas)
        for certificate in _certificates(f"http.tls.clientcas[{index}]", path)
    ]
    minimum = _TLS_VERSIONS[tls.minimum_version]
    openssl_names = [TLS_CIPHER_SUITES[name] for name in tls.cipher_suites]
    suites = [name for name in openssl_names if name is not None]
    if not suites:
        # Only TLS 1.3 suites: Go's server then has none for older versions.
        minimum = TLSVersion.TLSv1_3
    versions = (
        {"raiseMinimumTo": minimum}
        if minimum >= TLSVersion.TLSv1_2
        else {"insecurelyLowerMinimumTo": minimum}
    )
    try:
        options = CertificateOptions(
            privateKey=PKey.from_cryptography_key(private_key),
            certificate=X509.from_cryptography(chain[0]),
            extraCertChain=[X509.from_cryptography(extra) for extra in chain[1:]],
            trustRoot=(
                trustRootFromCertificates(
                    [Certificate(X509.from_cryptography(ca)) for ca in authorities]
                )
                if authorities
                else None
            ),
            acceptableCiphers=(
                AcceptableCiphers.fromOpenSSLCipherString(":".join(suites)) if suites else None
            ),
            **versions,
        )
    except ValueError:
        raise ConfigError(
            "http.tls.ciphersuites", "this OpenSSL offers none of these cipher suites"
        ) from None
    try:
        # Made now, so that OpenSSL's objections stop start-up.  The options
        # keep this context and make every connection from it, so the CA
        # names added below reach every client (tests/test_tls.py checks).
        context = options.getContext()
    except SSL.Error as error:
        reasons = "; ".join(str(reason[-1]) for reason in error.args[0] if reason)
        raise ConfigError("http.tls.certificate", f"OpenSSL refuses it: {reasons}") from None
    for authority in authorities:
        context.add_client_ca(authority)
    return options


# What Go's HTTP server answers to a plain-HTTP request on a TLS port, which
# it tells by the first five bytes, where a TLS record header should be.
_HTTP_ON_TLS_PORT = (
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)
_HTTP_REQUEST_STARTS = (b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO")


class _RegistryTLSTransport(BufferingTLSTransport):
    """
    TLS over one connection, which answers a plain-HTTP request with a
    400 saying so, as Distribution does, rather than a failed handshake.
    """

    _first_bytes = True

    def dataReceived(self, data: bytes) -> None:
        """Answer plain HTTP; hand anything else to TLS."""
        if self._first_bytes and data:
            self._first_bytes = False
            if data.startswith(_HTTP_REQUEST_STARTS):
                assert self.transport is not None
                self.transport.write(_HTTP_ON_TLS_PORT)
                self.transport.loseConnection()
                return
        super().dataReceived(data)


class _RegistryTLSFactory(TLSMemoryBIOFactory):
    protocol = _RegistryTLSTransport


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """
    TLS over the connections another server endpoint accepts: C{http.addr}
    over TCP or a unix socket, or the port workers share.
    """

    def __init__(self, endpoint: IStreamServerEndpoint, options: CertificateOptions) -> None:
        self.endpoint = endpoint
        self.options = options

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Listen with C{endpoint}; each connection speaks TLS, then C{factory}'s protocol."""
        return self.endpoint.listen(_RegistryTLSFactory(self.options, False, factory))
