# -*- test-case-name: tests.test_config -*-
"""
The C{http.tls} part of the C{http} section: the certificate, key, client
CAs, protocol versions and cipher suites to serve HTTPS with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from txregistry.config.core import NOT_YET, ConfigError, Schema, StringList, Unsupported

# http.tls.minimumtls: Distribution's names, and its default.
TLS_VERSIONS = ("tls1.0", "tls1.1", "tls1.2", "tls1.3")
DEFAULT_MINIMUM_TLS = "tls1.2"

# http.tls.ciphersuites: the names Distribution accepts (Go's), each with
# OpenSSL's name for the same suite.  TLS 1.3 suites are None: Go always
# offers all three, whatever the list says, and so does OpenSSL.
TLS_CIPHER_SUITES: Mapping[str, str | None] = {
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
}

# The suites Distribution 2.8 restricts TLS 1.2 and below to by default.
DEFAULT_TLS_CIPHER_SUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_AES_128_GCM_SHA256",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_256_GCM_SHA384",
)


@dataclass(frozen=True)
class TLSConfig:
    """
    The C{http.tls} section: serve HTTPS with this certificate and key.
    The files are only named here; they are read, and checked, when the
    service is built (see L{txregistry.tls}).

    @ivar certificate: a PEM file: the server's certificate, then any
        intermediate certificates of its chain.
    @ivar key: a PEM file: the certificate's private key, unencrypted.
    @ivar client_cas: PEM files of the CAs that sign client certificates;
        when given, clients must present one (mutual TLS).
    @ivar minimum_version: one of L{TLS_VERSIONS}.
    @ivar cipher_suites: names from L{TLS_CIPHER_SUITES}, Go's.
    """

    certificate: str
    key: str
    client_cas: tuple[str, ...] = ()
    minimum_version: str = DEFAULT_MINIMUM_TLS
    cipher_suites: tuple[str, ...] = DEFAULT_TLS_CIPHER_SUITES


# The schema below http.tls, for the http section's schema to hold.
TLS_SCHEMA: Schema = {
    "certificate": str,
    "key": str,
    "clientcas": StringList,
    "minimumtls": str,
    "ciphersuites": StringList,
    "letsencrypt": Unsupported(
        f"Let's Encrypt {NOT_YET}; give http.tls.certificate and http.tls.key"
    ),
}


def build_tls(section: Mapping[str, Any] | None) -> TLSConfig | None:
    """
    The C{http.tls} section, typed.  One with no value set serves plain
    HTTP, as for Distribution; otherwise a certificate and key are needed.

    @raise ConfigError: for a missing certificate or key, or a version or
        cipher suite that is not Distribution's.
    """
    if not section or not any(section.values()):
        return None
    certificate = section.get("certificate")
    if not certificate:
        raise ConfigError("http.tls.certificate", "missing; TLS needs a certificate and its key")
    key = section.get("key")
    if not key:
        raise ConfigError("http.tls.key", "missing; TLS needs the certificate's private key")
    for index, path in enumerate(section.get("clientcas") or []):
        if not path:
            raise ConfigError(f"http.tls.clientcas[{index}]", "must name a file of CA certificates")
    minimum = section.get("minimumtls") or DEFAULT_MINIMUM_TLS
    if minimum not in TLS_VERSIONS:
        raise ConfigError(
            "http.tls.minimumtls", f"{minimum!r} is not one of {', '.join(TLS_VERSIONS)}"
        )
    suites = tuple(section.get("ciphersuites") or DEFAULT_TLS_CIPHER_SUITES)
    for index, suite in enumerate(suites):
        if suite not in TLS_CIPHER_SUITES:
            raise ConfigError(
                f"http.tls.ciphersuites[{index}]",
                f"unknown cipher suite {suite!r} "
                "(Go's names, such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)",
            )
    return TLSConfig(
        certificate=certificate,
        key=key,
        client_cas=tuple(section.get("clientcas") or ()),
        minimum_version=minimum,
        cipher_suites=suites,
    )
