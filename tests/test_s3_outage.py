"""
A registry on S3 when the bucket goes away: requests that need the bucket
answer 503 UNAVAILABLE within the configured timeout, the process keeps
serving once the bucket is back, and nothing half-written becomes visible.
"""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from conftest import Registry
from manifest_support import OCI_CONFIG, OCI_LAYER, descriptor, encode
from support import assert_error, sha256
from txregistry.registry.manifest_formats import OCI_MANIFEST
from txregistry.testing.client import request
from txregistry.testing.s3server import S3ServerProcess

# Seconds the registry gives one request to the bucket; no retries.
TIMEOUT = 1
# The most a request may take when the bucket hangs: a few bucket requests,
# each cut at TIMEOUT, and some slack for a loaded machine.
BOUND = 6 * TIMEOUT + 2


@pytest.fixture
def outage_server(tmp_path: Path) -> Iterator[S3ServerProcess]:
    """An S3 server of the test's own, since the test pauses it."""
    with S3ServerProcess(tmp_path / "s3", name="s3-outage") as server:
        server.create_bucket("outage")
        yield server


@pytest.fixture
def s3_registry(
    outage_server: S3ServerProcess, start_registry_with: Callable[..., Registry]
) -> Registry:
    """A registry on the outage server's bucket, with short timeouts."""
    storage = {
        **outage_server.storage_parameters(
            "outage", "/registry", readtimeout=TIMEOUT, connecttimeout=TIMEOUT, maxretries=0
        ),
        "delete": {"enabled": True},
        "redirect": {"disable": True},
    }
    return start_registry_with({"storage": storage})


def timed(registry: Registry, method: str, target: str, **options: Any) -> Any:
    """A request that must be answered within L{BOUND} seconds."""
    began = time.monotonic()
    # Not Registry.request, which refuses every 5xx: here a 503 is the point.
    response = request(method, registry.resolve(target), **options)
    elapsed = time.monotonic() - began
    assert elapsed < BOUND, f"{method} {target} took {elapsed:.1f}s"
    return response


def assert_unavailable(response: Any, method: str) -> None:
    """503 UNAVAILABLE (a HEAD answer has the status only)."""
    if method == "HEAD":
        assert response.status == 503
    else:
        assert_error(response, 503, "UNAVAILABLE")


def test_outage_answers_503_then_recovers(
    s3_registry: Registry, outage_server: S3ServerProcess, repo: str
) -> None:
    """
    While the bucket hangs, reads and writes answer 503 UNAVAILABLE in
    time; an upload whose commit failed stays an upload (its blob is not
    visible) and is finished once the bucket is back.
    """
    config, layer = b'{"architecture":"amd64","os":"linux"}', os.urandom(300_000)
    s3_registry.push(repo, config)
    s3_registry.push(repo, layer)
    manifest = encode(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": [descriptor(OCI_LAYER, layer)],
        }
    )
    response = s3_registry.request(
        "PUT", f"{repo}/manifests/v1", manifest, {"Content-Type": OCI_MANIFEST}
    )
    assert response.status == 201

    pending = os.urandom(200_000)
    upload = s3_registry.start_upload(repo).header("Location")
    assert upload is not None
    response = s3_registry.request(
        "PATCH", upload, pending[:100_000], {"Content-Type": "application/octet-stream"}
    )
    assert response.status == 202
    upload = response.header("Location")
    assert upload is not None
    missing = sha256(b"never pushed")

    outage_server.pause()
    try:
        for method, target in [
            ("GET", f"{repo}/tags/list"),
            ("HEAD", f"{repo}/blobs/{missing}"),
            ("GET", f"{repo}/manifests/{sha256(b'unknown')}"),
            ("POST", f"{repo}/blobs/uploads/"),
            ("DELETE", f"{repo}/manifests/v1"),
        ]:
            assert_unavailable(timed(s3_registry, method, target), method)
        # A chunk streamed in, and a commit: neither may leave a blob behind.
        response = timed(
            s3_registry,
            "PATCH",
            upload,
            body=pending[100_000:],
            headers={"Content-Type": "application/octet-stream"},
        )
        assert_error(response, 503, "UNAVAILABLE")
        response = timed(s3_registry, "PUT", f"{upload}&digest={sha256(pending)}")
        assert_error(response, 503, "UNAVAILABLE")
        # The base route does not need the bucket.
        assert timed(s3_registry, "GET", "").status == 200
    finally:
        outage_server.resume()

    # Back: everything stored before the outage is served; the failed
    # commit made no blob.
    response = s3_registry.request("GET", f"{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert response.status == 200
    assert response.body == manifest
    assert s3_registry.request("GET", f"{repo}/blobs/{sha256(layer)}").body == layer
    assert s3_registry.request("HEAD", f"{repo}/blobs/{sha256(pending)}").status == 404

    # The upload is still there, with what it held before the outage (the
    # failed chunk may or may not have been kept, as for any cut request).
    response = s3_registry.request("GET", upload)
    assert response.status == 204
    held = int(response.header("Range").rsplit("-", 1)[1]) + 1
    assert held in (100_000, 200_000)
    rest = pending[held:]
    if rest:
        response = s3_registry.request(
            "PATCH", upload, rest, {"Content-Type": "application/octet-stream"}
        )
        assert response.status == 202, response.body
        upload = response.header("Location")
        assert upload is not None
    response = s3_registry.request("PUT", f"{upload}&digest={sha256(pending)}")
    assert response.status == 201, response.body
    assert s3_registry.request("GET", f"{repo}/blobs/{sha256(pending)}").body == pending


def test_outage_while_streaming_a_blob(
    s3_registry: Registry, outage_server: S3ServerProcess, repo: str
) -> None:
    """
    A blob being streamed when the bucket hangs is cut short (the client
    sees a short body, never wrong bytes), without a traceback; the next
    GET once the bucket is back serves it whole.
    """
    blob = os.urandom(48 * 1024 * 1024)
    digest = s3_registry.push(repo, blob)
    parts = urlsplit(s3_registry.api)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=BOUND * 2)
    try:
        connection.request("GET", f"{parts.path}{repo}/blobs/{digest}")
        response = connection.getresponse()
        assert response.status == 200
        assert response.read(1024 * 1024) == blob[: 1024 * 1024]
        outage_server.pause()
        try:
            received = 1024 * 1024
            try:
                while chunk := response.read(1024 * 1024):
                    assert chunk == blob[received : received + len(chunk)]
                    received += len(chunk)
            except http.client.IncompleteRead as short:
                received += len(short.partial)
            except ConnectionResetError:
                pass  # the registry aborted the connection
            assert received < len(blob)
        finally:
            outage_server.resume()
    finally:
        connection.close()
    assert s3_registry.request("GET", f"{repo}/blobs/{digest}").body == blob


@pytest.mark.parametrize("refusal", ["missing-bucket", "wrong-credentials"])
def test_storage_refusing_is_unavailable(
    refusal: str, tmp_path: Path, start_registry_with: Callable[..., Registry], repo: str
) -> None:
    """
    A bucket that does not exist, or keys the server does not know (moto
    checking credentials), answer 503 UNAVAILABLE, not 404 or 500: the
    registry cannot use its storage, the client did nothing wrong.
    """
    checks_keys = {"INITIAL_NO_AUTH_ACTION_COUNT": "0"} if refusal == "wrong-credentials" else {}
    with S3ServerProcess(tmp_path / "s3", name=f"s3-{refusal}", env=checks_keys) as server:
        storage = {
            **server.storage_parameters("no-such-bucket", "", maxretries=0),
            "delete": {"enabled": True},
        }
        registry = start_registry_with({"storage": storage})
        for method, target in [
            ("GET", f"{repo}/tags/list"),
            ("HEAD", f"{repo}/blobs/{sha256(b'x')}"),
            ("POST", f"{repo}/blobs/uploads/"),
            ("GET", f"{repo}/manifests/latest"),
            ("GET", "_catalog"),
        ]:
            assert_unavailable(timed(registry, method, target), method)
