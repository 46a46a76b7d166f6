# -*- test-case-name: tests.test_s3server -*-
"""
An S3-compatible server for tests: moto's S3 server (C{python -m
moto.server}, from the C{moto[server]} package) as a process of its own on
a free port of 127.0.0.1, its data in memory, gone when it stops.

It can be paused (C{SIGSTOP}) to play an outage in which the server
still accepts connections, since the kernel completes the handshake, but
nothing ever answers; and resumed (C{SIGCONT}).

    with S3ServerProcess(tmp_path / "s3") as s3:
        s3.create_bucket("registry")
        config["storage"] = {**s3.storage_parameters("registry", "/root"), ...}
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import botocore.session
from botocore.config import Config

from txregistry.testing.process import free_port

# The keys and region every client of the test server uses; moto accepts
# any keys, but clients must sign with the same ones they name.
ACCESS_KEY = "txregistry-test-access-key"
SECRET_KEY = "txregistry-test-secret-key"
REGION = "us-east-1"


class S3ServerProcess:
    """
    moto's S3 server as a process on 127.0.0.1.  Use as a context manager,
    or call L{start} and L{stop}.

    @ivar workdir: the folder the process runs in, where its log goes.
    @ivar url: C{http://127.0.0.1:PORT} once started.
    @ivar log_path: the file the server's output goes to.
    @ivar paused: whether the server is stopped by L{pause}.
    """

    def __init__(self, workdir: Path, *, name: str = "s3") -> None:
        self.workdir = Path(workdir)
        self.name = name
        self.port = 0
        self.url = ""
        self.paused = False
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"{name}.log"
        self._log: IO[bytes] | None = None

    def __repr__(self) -> str:
        return f"<S3ServerProcess {self.name} at {self.url or 'not started'}>"

    # -- the process ---------------------------------------------------------------

    def command(self) -> list[str]:
        """The command line that runs the server."""
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def start(self, timeout: float = 30.0) -> S3ServerProcess:
        """
        Start the server and wait until it answers a request.

        @raise RuntimeError: the server exited, or did not answer within
            C{timeout} seconds (then it is stopped); the message ends with
            the tail of its log.  A missing moto says how to install it.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_", "MOTO_")) and not key.lower().endswith("_proxy")
        }
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                returncode = self.process.returncode
                self.stop()
                raise RuntimeError(
                    f"{self.name}: the S3 server exited with {returncode}"
                    f"{self._install_hint()}:\n{self.output()}"
                )
            if self.answers(timeout=2.0):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"{self.name}: the S3 server did not answer within {timeout}s:\n{self.output()}"
        )

    def answers(self, timeout: float = 2.0) -> bool:
        """Whether the server answers a request (listing the buckets) within C{timeout}s."""
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                connection.request("GET", "/")
                connection.getresponse().read()
            finally:
                connection.close()
        except OSError:
            return False
        return True

    def _install_hint(self) -> str:
        if "No module named 'moto'" in self.output():
            return " (moto is not installed: pip install 'moto[server]')"
        return ""

    def output(self, lines: int = 40) -> str:
        """The last C{lines} lines the server logged."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def pause(self) -> None:
        """
        Stop the process (C{SIGSTOP}): connections are still accepted, by
        the kernel, but no request is answered until L{resume}.
        """
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """Let a paused process run again (C{SIGCONT}); it answers what was sent meanwhile."""
        self._signal(signal.SIGCONT)
        self.paused = False

    def _signal(self, number: signal.Signals) -> None:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"{self.name}: the S3 server is not running")
        self.process.send_signal(number)

    def stop(self) -> None:
        """Stop the server (resumed first if paused; SIGTERM, then SIGKILL after 10 s)."""
        if self.process is not None and self.process.poll() is None:
            if self.paused:
                self.resume()
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.paused = False
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> S3ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- talking to it ------------------------------------------------------------------

    def client(self, timeout: float = 10.0) -> Any:
        """
        A botocore S3 client of the server: path-style addressing, the test
        keys, C{timeout} seconds to connect and to read, no retries, and no
        proxy whatever the environment says.  Typed L{Any}: botocore's
        stubs do not describe the methods of a service's client.
        """
        config = Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": 0},
            s3={"addressing_style": "path"},
            proxies={},
        )
        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=config,
        )

    def create_bucket(self, bucket: str) -> None:
        """Create C{bucket} (in C{us-east-1}, so with no location constraint)."""
        self.client().create_bucket(Bucket=bucket)

    def buckets(self) -> list[str]:
        """The names of the buckets that exist."""
        listing = self.client().list_buckets()
        return sorted(entry["Name"] for entry in listing.get("Buckets", []))

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key in C{bucket} that starts with C{prefix}, sorted."""
        paginator = self.client().get_paginator("list_objects_v2")
        return sorted(
            entry["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for entry in page.get("Contents", [])
        )

    def storage_parameters(
        self, bucket: str, rootdirectory: str = "", **extra: Any
    ) -> dict[str, Any]:
        """
        The C{s3} entry of a registry's C{storage} section for C{bucket} on
        this server, with Distribution's parameter names:
        C{{"s3": {"region": ..., "regionendpoint": ..., ...}}}, under
        C{rootdirectory}; C{extra} adds or replaces parameters
        (C{chunksize}, ...).
        """
        parameters: dict[str, Any] = {
            "region": REGION,
            "regionendpoint": self.url,
            "bucket": bucket,
            "accesskey": ACCESS_KEY,
            "secretkey": SECRET_KEY,
            "secure": False,
            "forcepathstyle": True,
            "rootdirectory": rootdirectory,
        }
        parameters.update(extra)
        return {"s3": parameters}
