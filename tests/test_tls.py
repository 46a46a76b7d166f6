"""
TLS (C{http.tls}), served as Distribution serves it: HTTPS with a server
certificate of a test CA (L{txregistry.testing.certificates}), the minimum
version and cipher suites, client certificates (C{clientcas}), an intermediate
CA in the certificate file, plain HTTP answered with Go's 400, and the
workers sharing a TLS port.  What a client sees is checked against both
registries, the reference (Distribution 2.8's C{docker-registry}) and
txregistry; skopeo pushes and pulls, verifying the server with a cert dir
as containers/image reads it (C{ca.crt}, C{client.cert}, C{client.key}).

Then the mistakes: files that cannot be read, hold no PEM, or a key that
does not match; each a one-line configuration error naming the key.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import ISSLTransport
from zope.interface import directlyProvides

from clients import Clients, ImageSet, OCILayout, same_image
from conftest import LOG_PROBLEMS
from txregistry.config import ConfigError, TLSConfig
from txregistry.resources.sendfile import sendfile_transport
from txregistry.testing.certificates import (
    CertificateAuthority,
    IssuedCertificate,
    certificate_pem,
)
from txregistry.testing.client import HTTPResponse
from txregistry.testing.process import RegistryProcess, base_config
from txregistry.tls import tls_options
from txregistry.workers import WORKER_VARIABLE

KINDS = ["reference", "txregistry"]
API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")
# Go's answer to plain HTTP on a TLS port, byte for byte.
HTTP_ON_TLS_PORT = (
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)


# -- certificates ------------------------------------------------------------------------


@dataclass(frozen=True)
class PKI:
    """
    The test CA and what it signed, and another CA that signed nothing the
    registries trust.

    @ivar server: for C{localhost} and C{127.0.0.1}.
    @ivar chained: a server certificate signed by an intermediate CA, its
        file holding the intermediate's certificate after its own.
    """

    folder: Path
    ca: CertificateAuthority
    ca_file: Path
    server: IssuedCertificate
    client: IssuedCertificate
    chained: IssuedCertificate
    other_ca_file: Path
    other_client: IssuedCertificate

    def context(
        self,
        client: IssuedCertificate | None = None,
        maximum: ssl.TLSVersion | None = None,
        ca_file: Path | None = None,
    ) -> ssl.SSLContext:
        """A client's TLS settings: trusting the test CA, with C{client}'s certificate."""
        context = ssl.create_default_context(cafile=str(ca_file or self.ca_file))
        if client is not None:
            context.load_cert_chain(client.certificate, client.key)
        if maximum is not None:
            context.maximum_version = maximum
        return context

    def cert_dir(
        self, name: str, client: IssuedCertificate | None = None, ca_file: Path | None = None
    ) -> Path:
        """
        A containers/image cert dir: the CA (the test CA unless C{ca_file})
        as C{ca.crt}, and C{client}'s certificate and key.
        """
        folder = self.folder / "cert-dirs" / name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(ca_file or self.ca_file, folder / "ca.crt")
        if client is not None:
            shutil.copy(client.certificate, folder / "client.cert")
            shutil.copy(client.key, folder / "client.key")
        return folder


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """The module's certificates, made once."""
    folder = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority.create("txregistry test CA")
    intermediate = ca.intermediate("txregistry test intermediate CA")
    chained = intermediate.issue(folder, "chained")
    with open(chained.certificate, "ab") as chain:
        chain.write(certificate_pem(intermediate.certificate))
    other_ca = CertificateAuthority.create("another CA")
    return PKI(
        folder=folder,
        ca=ca,
        ca_file=ca.write(folder / "ca.crt"),
        server=ca.issue(folder, "server", hosts=["localhost", "127.0.0.1"]),
        client=ca.issue(folder, "client", client=True),
        chained=chained,
        other_ca_file=other_ca.write(folder / "other-ca.crt"),
        other_client=other_ca.issue(folder, "other-client", client=True),
    )


def tls_section(pki: PKI, server: IssuedCertificate | None = None, **extra: Any) -> dict[str, Any]:
    """An C{http.tls} section with C{server}'s certificate and key (the test server's)."""
    server = server or pki.server
    return {"certificate": str(server.certificate), "key": str(server.key), **extra}


# -- registries and requests -------------------------------------------------------------

Start = Callable[..., RegistryProcess]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """
    C{start(kind, tls_section, args=None)}: a registry (C{reference} or
    C{txregistry}) serving TLS; stopped at teardown, failing the test if
    txregistry logged a traceback.
    """
    started: list[RegistryProcess] = []

    def start_registry(
        kind: str, tls: Mapping[str, Any], args: list[str] | None = None
    ) -> RegistryProcess:
        name = f"{kind}-{len(started)}"
        workdir = tmp_path / name
        http_section = {"addr": "127.0.0.1:0", "secret": "tls-tests", "tls": dict(tls)}
        config = base_config(workdir / "root", http=http_section)
        process = RegistryProcess(
            workdir, config, reference=kind == "reference", name=name, args=args
        )
        started.append(process)
        # Ready once it answers: plain HTTP gets the 400 that says "use TLS".
        process.start()
        return process

    yield start_registry
    for process in started:
        process.stop()
    for process in started:
        if not process.reference:
            problems = [
                line
                for line in process.output().splitlines()
                if any(p in line for p in LOG_PROBLEMS)
            ]
            assert not problems, f"{process.name} logged:\n" + "\n".join(problems)


def https(
    process: RegistryProcess,
    method: str,
    path: str,
    context: ssl.SSLContext,
    *,
    host: str = "127.0.0.1",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> HTTPResponse:
    """One request over HTTPS to C{host} (the name the certificate is checked for)."""
    connection = http.client.HTTPSConnection(host, process.port, context=context, timeout=30)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return HTTPResponse(response.status, response.headers, response.read())
    finally:
        connection.close()


def plain_answer(port: int) -> bytes:
    """Everything the server answers to a plain-HTTP request before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while chunk := connection.recv(4096):
            answer += chunk
    return answer


# -- serving -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_https(kind: str, start: Start, pki: PKI) -> None:
    """
    C{GET /v2/} answers over HTTPS, at the certificate's IP address and DNS
    name, with TLS 1.2 and 1.3; curl agrees.  The upload URLs it hands out
    say https, unless a proxy's C{X-Forwarded-Proto} says otherwise.
    """
    registry = start(kind, tls_section(pki))
    for host in ("127.0.0.1", "localhost"):
        for maximum in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            response = https(registry, "GET", "/v2/", pki.context(maximum=maximum), host=host)
            assert response.status == 200, response.body
            assert response.header(API_VERSION[0]) == API_VERSION[1]
    curl = subprocess.run(
        ["curl", "-sS", "--cacert", str(pki.ca_file), f"https://localhost:{registry.port}/v2/"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (curl.returncode, curl.stdout) == (0, "{}"), curl.stderr

    started = https(registry, "POST", "/v2/tls/location/blobs/uploads/", pki.context())
    assert started.status == 202, started.body
    location = started.header("Location") or ""
    assert location.startswith(f"https://127.0.0.1:{registry.port}/v2/tls/location/"), location
    proxied = https(
        registry,
        "POST",
        "/v2/tls/location/blobs/uploads/",
        pki.context(),
        headers={"X-Forwarded-Proto": "http"},
    )
    assert (proxied.header("Location") or "").startswith("http://127.0.0.1:"), proxied.headers


@pytest.mark.parametrize("kind", KINDS)
def test_plain_http_refused(kind: str, start: Start, pki: PKI) -> None:
    """Plain HTTP to the TLS port gets Go's 400, which says why, and the connection closes."""
    registry = start(kind, tls_section(pki))
    assert plain_answer(registry.port) == HTTP_ON_TLS_PORT
    assert https(registry, "GET", "/v2/", pki.context()).status == 200


@pytest.mark.parametrize("kind", KINDS)
def test_untrusted_server_certificate(kind: str, start: Start, pki: PKI) -> None:
    """A client that trusts another CA refuses the server's certificate."""
    registry = start(kind, tls_section(pki))
    with pytest.raises(ssl.SSLCertVerificationError):
        https(registry, "GET", "/v2/", pki.context(ca_file=pki.other_ca_file))


@pytest.mark.parametrize("kind", KINDS)
def test_minimum_tls13(kind: str, start: Start, pki: PKI) -> None:
    """With C{minimumtls: tls1.3}, a client that speaks at most TLS 1.2 is refused."""
    registry = start(kind, tls_section(pki, minimumtls="tls1.3"))
    with pytest.raises(ssl.SSLError):
        https(registry, "GET", "/v2/", pki.context(maximum=ssl.TLSVersion.TLSv1_2))
    assert https(registry, "GET", "/v2/", pki.context()).status == 200


@pytest.mark.parametrize("kind", KINDS)
def test_cipher_suites(kind: str, start: Start, pki: PKI) -> None:
    """
    C{ciphersuites} (Go's names) restricts TLS 1.2 to those suites; a list
    of TLS 1.3 suites only leaves TLS 1.2 none at all.
    """
    registry = start(
        kind, tls_section(pki, ciphersuites=["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"])
    )
    for cipher, works in [
        ("ECDHE-ECDSA-AES128-GCM-SHA256", True),
        ("ECDHE-ECDSA-AES256-GCM-SHA384", False),
    ]:
        context = pki.context(maximum=ssl.TLSVersion.TLSv1_2)
        context.set_ciphers(cipher)
        if works:
            assert https(registry, "GET", "/v2/", context).status == 200
        else:
            with pytest.raises(ssl.SSLError):
                https(registry, "GET", "/v2/", context)
    assert https(registry, "GET", "/v2/", pki.context()).status == 200  # TLS 1.3

    only_13 = start(kind, tls_section(pki, ciphersuites=["TLS_AES_128_GCM_SHA256"]))
    with pytest.raises(ssl.SSLError):
        https(only_13, "GET", "/v2/", pki.context(maximum=ssl.TLSVersion.TLSv1_2))
    assert https(only_13, "GET", "/v2/", pki.context()).status == 200


@pytest.mark.parametrize("kind", KINDS)
def test_certificate_chain(kind: str, start: Start, pki: PKI) -> None:
    """
    The certificate file may hold intermediate certificates after the
    server's: they are sent, so that clients that trust only the root verify it.
    """
    registry = start(kind, tls_section(pki, server=pki.chained))
    assert https(registry, "GET", "/v2/", pki.context()).status == 200


@pytest.mark.parametrize("kind", KINDS)
def test_skopeo_push_pull(
    kind: str, start: Start, pki: PKI, clients: Clients, images: ImageSet, tmp_path: Path
) -> None:
    """
    skopeo pushes and pulls with TLS verified, the CA in its cert dir; with
    a cert dir of another CA it refuses the registry.
    """
    registry = start(kind, tls_section(pki))
    host = f"127.0.0.1:{registry.port}"
    cert_dir = pki.cert_dir("ca-only")
    clients.skopeo(
        None,
        "copy",
        "--preserve-digests",
        "--dest-cert-dir",
        str(cert_dir),
        "--dest-tls-verify=true",
        f"oci:{images.layout.path}:single",
        f"docker://{host}/tls/single:v1",
    )
    layout = tmp_path / "pulled"
    clients.skopeo(
        None,
        "copy",
        "--src-cert-dir",
        str(cert_dir),
        "--src-tls-verify=true",
        f"docker://{host}/tls/single:v1",
        f"oci:{layout}:single",
    )
    same_image(OCILayout(layout).read_image("single"), images.single)

    other = pki.cert_dir("other-ca", ca_file=pki.other_ca_file)
    refused = clients.run(
        "skopeo",
        [
            "inspect",
            "--cert-dir",
            str(other),
            "--tls-verify=true",
            f"docker://{host}/tls/single:v1",
        ],
        check=False,
    )
    assert refused.returncode != 0
    assert "certificate" in refused.stderr, refused.stderr[-2000:]


# -- client certificates (mutual TLS) ----------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_client_certificates(
    kind: str, start: Start, pki: PKI, clients: Clients, images: ImageSet
) -> None:
    """
    With C{clientcas}, a client must present a certificate one of those CAs
    signed: without one, or with one of another CA, the handshake fails.
    skopeo presents the one in its cert dir.
    """
    registry = start(kind, tls_section(pki, clientcas=[str(pki.ca_file)]))
    assert https(registry, "GET", "/v2/", pki.context(client=pki.client)).status == 200
    for client in (None, pki.other_client):
        with pytest.raises(OSError):
            https(registry, "GET", "/v2/", pki.context(client=client))

    def push(cert_dir: Path) -> list[str]:
        return [
            "copy",
            "--dest-cert-dir",
            str(cert_dir),
            "--dest-tls-verify=true",
            f"oci:{images.layout.path}:other",
            f"docker://127.0.0.1:{registry.port}/tls/mutual:v1",
        ]

    clients.skopeo(None, *push(pki.cert_dir("mutual", pki.client)))
    refused = clients.run("skopeo", push(pki.cert_dir("ca-only")), check=False)
    assert refused.returncode != 0


@pytest.mark.parametrize("kind", KINDS)
def test_client_ca_names_sent(kind: str, start: Start, pki: PKI) -> None:
    """
    The server names the CAs it accepts client certificates from, so that
    a client holding several certificates can choose (Go's clients do).
    """
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl is not installed: apt-get install openssl"
    registry = start(kind, tls_section(pki, clientcas=[str(pki.ca_file)]))
    result = subprocess.run(
        [
            openssl,
            "s_client",
            "-connect",
            f"127.0.0.1:{registry.port}",
            "-CAfile",
            str(pki.ca_file),
            "-cert",
            str(pki.client.certificate),
            "-key",
            str(pki.client.key),
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
    )
    names = result.stdout.split("Acceptable client certificate CA names", 1)[-1]
    assert "CN = txregistry test CA" in names.splitlines()[1], result.stdout


# -- txregistry only ---------------------------------------------------------------------


def test_workers_share_a_tls_port(start: Start, pki: PKI) -> None:
    """C{--workers}: every process serves TLS on the shared port, with the same answers."""
    registry = start("txregistry", tls_section(pki), args=["--workers", "2"])
    deadline = time.monotonic() + 20
    while registry.output().count("serving TLS") < 2:
        assert time.monotonic() < deadline, registry.output()
        time.sleep(0.1)
    for _ in range(20):  # new connections, spread by the kernel
        assert https(registry, "GET", "/v2/", pki.context()).status == 200
        assert plain_answer(registry.port) == HTTP_ON_TLS_PORT


def test_no_sendfile_over_tls(start: Start, pki: PKI) -> None:
    """
    A blob is never sent with sendfile(2) on a TLS connection, even when the
    transport is a socket's descriptor (as with Twisted's own C{ssl:}
    endpoints): a large blob arrives whole over HTTPS, and in ranges.
    """

    class SocketWithTLS(FileDescriptor):
        def getHandle(self) -> socket.socket:
            return socket.socket()

    transport = SocketWithTLS()
    directlyProvides(transport, ISSLTransport)
    request: Any = type("Request", (), {"channel": type("Channel", (), {"transport": transport})})
    assert sendfile_transport(request) is None
    transport.getHandle().close()

    registry = start("txregistry", tls_section(pki))
    data = os.urandom(20 * 1024 * 1024 + 7)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    pushed = https(
        registry, "POST", f"/v2/tls/big/blobs/uploads/?digest={digest}", pki.context(), body=data
    )
    assert pushed.status == 201, pushed.body
    fetched = https(registry, "GET", f"/v2/tls/big/blobs/{digest}", pki.context())
    assert fetched.body == data
    part = https(
        registry,
        "GET",
        f"/v2/tls/big/blobs/{digest}",
        pki.context(),
        headers={"Range": "bytes=1000-2000000"},
    )
    assert (part.status, part.body) == (206, data[1000:2000001])


# -- configuration mistakes --------------------------------------------------------------


def test_file_mistakes(pki: PKI, tmp_path: Path) -> None:
    """
    The files are read and checked when the service is built: every
    mistake is one line naming the key.
    """
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not PEM at all\n")
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        pki.server.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    server, client = pki.server, pki.client
    missing = str(tmp_path / "missing.pem")
    for settings, key, problem in [
        ({"certificate": missing}, "http.tls.certificate", "cannot read"),
        ({"key": missing}, "http.tls.key", "cannot read"),
        ({"certificate": str(garbage)}, "http.tls.certificate", "no certificate in PEM"),
        ({"certificate": str(server.key)}, "http.tls.certificate", "no certificate in PEM"),
        ({"key": str(server.certificate)}, "http.tls.key", "no private key in PEM"),
        ({"key": str(encrypted)}, "http.tls.key", "encrypted"),
        ({"key": str(client.key)}, "http.tls.key", "does not match the certificate"),
        ({"client_cas": (missing,)}, "http.tls.clientcas[0]", "cannot read"),
        ({"client_cas": (str(pki.ca_file), str(garbage))}, "http.tls.clientcas[1]", "no cert"),
    ]:
        config = TLSConfig(
            **{"certificate": str(server.certificate), "key": str(server.key), **settings}
        )
        with pytest.raises(ConfigError) as caught:
            tls_options(config)
        assert caught.value.key == key, settings
        assert problem in caught.value.problem, (settings, caught.value.problem)
        assert "\n" not in str(caught.value)


def run_registry(config: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """C{twist registry} with C{config}, expected to give up at once."""
    path = workdir / "registry.yml"
    path.write_text(config)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    environ.pop(WORKER_VARIABLE, None)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "twisted", "registry", "--config", str(path)],
        cwd=workdir,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - started < 15, "the registry took long to give up"
    return result


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ("{certificate: CERT}", "http.tls.key: missing"),
        ("{certificate: CERT, key: MISSING}", "http.tls.key: cannot read "),
        ("{certificate: MISSING, key: KEY}", "http.tls.certificate: cannot read "),
        ("{certificate: CERT, key: OTHER_KEY}", "http.tls.key: "),
        ("{certificate: CERT, key: KEY, clientcas: [MISSING]}", "http.tls.clientcas[0]: "),
        ("{certificate: CERT, key: KEY, minimumtls: tls1.4}", "http.tls.minimumtls: "),
        ("{certificate: CERT, key: KEY, ciphersuites: [RC4]}", "http.tls.ciphersuites[0]: "),
        ("{letsencrypt: {cachefile: /tmp/le, email: a@b.c}}", "http.tls.letsencrypt: "),
    ],
)
def test_mistakes_stop_the_process(pki: PKI, tmp_path: Path, tls: str, message: str) -> None:
    """C{twist registry} with a TLS mistake exits at once with one line naming the key."""
    tls = (
        tls.replace("OTHER_KEY", str(pki.client.key))
        .replace("CERT", str(pki.server.certificate))
        .replace("KEY", str(pki.server.key))
        .replace("MISSING", str(tmp_path / "missing.pem"))
    )
    config = textwrap.dedent(
        f"""\
        version: 0.1
        storage:
          inmemory: {{}}
        http:
          addr: 127.0.0.1:0
          tls: {tls}
        """
    )
    result = run_registry(config, tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("txregistry: configuration error: " + message), lines[0]


def test_certificates_helper(pki: PKI) -> None:
    """
    The helper's certificates: a server's names its hosts, a client's is
    for client authentication, each signed by its CA; keys are private.
    """
    server = pki.server.x509
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    server.verify_directly_issued_by(pki.ca.certificate)
    client = pki.client.x509
    usages = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    client.verify_directly_issued_by(pki.ca.certificate)
    assert (pki.server.key.stat().st_mode & 0o777) == 0o600
