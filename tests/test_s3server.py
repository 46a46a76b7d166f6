"""
The S3 server harness itself (L{txregistry.testing.s3server}): it starts
moto's server and waits until it answers, makes buckets, keeps what is
stored, pauses and resumes it (a paused server accepts connections and
answers nothing), stops it even while paused, passes moto the settings it
is given, and says why when a start fails, with the end of the server's
log.

The module has a server of its own rather than the session's
C{s3_server}, since it pauses it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from txregistry.testing.s3server import ACCESS_KEY, REGION, SECRET_KEY, S3ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3ServerProcess]:
    """A server of the module's own."""
    with S3ServerProcess(tmp_path_factory.mktemp("s3"), name="harness") as running:
        yield running


def test_started(server: S3ServerProcess) -> None:
    """The server listens on 127.0.0.1 at the port it was given, and logs to its file."""
    parts = urlsplit(server.url)
    assert (parts.scheme, parts.hostname, parts.port) == ("http", "127.0.0.1", server.port)
    assert server.answers()
    assert server.process is not None and server.process.poll() is None
    assert server.log_path.parent == server.workdir
    assert "Running on http://127.0.0.1" in server.output()


def test_buckets_and_objects(server: S3ServerProcess) -> None:
    """A created bucket exists, and what is put in it can be listed and read back."""
    server.create_bucket("harness-objects")
    assert "harness-objects" in server.buckets()
    client = server.client()
    client.head_bucket(Bucket="harness-objects")
    for key in ("root/b", "root/a/c", "other"):
        client.put_object(Bucket="harness-objects", Key=key, Body=key.encode())
    assert server.keys("harness-objects", "root/") == ["root/a/c", "root/b"]
    body = client.get_object(Bucket="harness-objects", Key="root/b")["Body"].read()
    assert body == b"root/b"


def test_pause_and_resume(server: S3ServerProcess) -> None:
    """
    A paused server accepts the connection but answers nothing: a request
    times out.  Resumed, it answers again, with what it stored before.
    """
    server.create_bucket("harness-pause")
    server.client().put_object(Bucket="harness-pause", Key="kept", Body=b"kept")
    client = server.client(timeout=1.0)
    server.pause()
    try:
        assert server.paused
        started = time.monotonic()
        with pytest.raises(ReadTimeoutError):
            client.list_objects_v2(Bucket="harness-pause")
        assert 0.9 < time.monotonic() - started < 10
        assert not server.answers(timeout=0.5)
    finally:
        server.resume()
    assert not server.paused
    assert server.answers()
    assert server.keys("harness-pause") == ["kept"]


def test_storage_parameters(server: S3ServerProcess) -> None:
    """The C{storage} entry names this server, path-style, plain HTTP, the test keys."""
    assert server.storage_parameters("b", "/root", chunksize=5 << 20) == {
        "s3": {
            "region": REGION,
            "regionendpoint": server.url,
            "bucket": "b",
            "accesskey": ACCESS_KEY,
            "secretkey": SECRET_KEY,
            "secure": False,
            "forcepathstyle": True,
            "rootdirectory": "/root",
            "chunksize": 5 << 20,
        }
    }


def test_stop_while_paused(tmp_path: Path) -> None:
    """A paused server is stopped all the same, and at once; stopping again does nothing."""
    server = S3ServerProcess(tmp_path).start()
    process = server.process
    assert process is not None
    server.pause()
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5
    assert process.poll() is not None
    assert not server.paused
    server.stop()
    with pytest.raises(RuntimeError, match="not running"):
        server.pause()


def test_stopped_server_refuses(tmp_path: Path) -> None:
    """Once stopped, its port refuses connections: a client fails at once."""
    with S3ServerProcess(tmp_path) as server:
        client = server.client(timeout=1.0)
    with pytest.raises(EndpointConnectionError):
        client.list_buckets()
    assert not server.answers()


def test_env_reaches_moto(tmp_path: Path) -> None:
    """
    C{env} sets moto's environment: told to check access keys from the
    first request, it refuses the test keys, which it does not know.
    """
    with S3ServerProcess(tmp_path, env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as server:
        with pytest.raises(ClientError) as caught:
            server.client().list_buckets()
    assert caught.value.response["Error"]["Code"] == "InvalidAccessKeyId"


class _Exits(S3ServerProcess):
    """A server whose process says something and exits at once."""

    def command(self) -> list[str]:
        script = "import sys; print('cannot serve: the port is cursed'); sys.exit(3)"
        return [sys.executable, "-c", script]


class _Silent(S3ServerProcess):
    """A server whose process runs but never listens."""

    def command(self) -> list[str]:
        script = "import time; print('thinking about it', flush=True); time.sleep(60)"
        return [sys.executable, "-c", script]


def test_start_that_exits(tmp_path: Path) -> None:
    """A server that exits while starting is an error naming its exit code and output."""
    with pytest.raises(RuntimeError) as caught:
        _Exits(tmp_path, name="exits").start()
    message = str(caught.value)
    assert "exits: the S3 server exited with 3" in message
    assert "cannot serve: the port is cursed" in message


def test_start_that_never_answers(tmp_path: Path) -> None:
    """A server that does not answer in time is stopped, and the error shows its output."""
    server = _Silent(tmp_path, name="silent")
    with pytest.raises(RuntimeError) as caught:
        server.start(timeout=1.0)
    message = str(caught.value)
    assert "silent: the S3 server did not answer within 1.0s" in message
    assert "thinking about it" in message
    assert server.process is not None
    assert server.process.poll() is not None


def test_missing_moto_is_named(tmp_path: Path) -> None:
    """Without moto the error says what to install."""

    class _WithoutMoto(S3ServerProcess):
        def command(self) -> list[str]:
            # -I: isolated, so no site-packages and so no moto.
            return [sys.executable, "-I", "-S", "-m", "moto.server"]

    with pytest.raises(RuntimeError, match=r"moto is not installed: pip install 'moto\[server\]'"):
        _WithoutMoto(tmp_path).start()
