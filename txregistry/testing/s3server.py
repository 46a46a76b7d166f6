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

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config

from txregistry.testing.process import PausableServerProcess

# The keys and region every client of the test server uses; moto accepts
# any keys (unless told to check them), but clients must sign with the
# same ones they name.
ACCESS_KEY = "txregistry-test-access-key"
SECRET_KEY = "txregistry-test-secret-key"
REGION = "us-east-1"


class S3ServerProcess(PausableServerProcess):
    """
    moto's S3 server as a process on 127.0.0.1, ready once it answers a
    request.  Use as a context manager, or call L{start} and L{stop}; a
    start that fails because moto is missing says how to install it.

    It inherits none of our C{AWS_*}, C{MOTO_*} and proxy variables, so
    that neither our credentials nor our settings reach it.

    @param env: environment variables for moto, set after that filtering:
        C{{"INITIAL_NO_AUTH_ACTION_COUNT": "0"}} makes it check access keys
        from the first request, answering C{InvalidAccessKeyId} to keys it
        does not know (the test keys included).
    @ivar workdir: the folder the process runs in, where its log goes.
    @ivar url: C{http://127.0.0.1:PORT} once started.
    @ivar log_path: the file the server's output goes to.
    @ivar paused: whether the server is stopped by L{pause}.
    """

    what = "the S3 server"

    def __init__(
        self, workdir: Path, *, name: str = "s3", env: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(workdir, name=name, env=env)

    # -- the process ---------------------------------------------------------------

    def command(self) -> list[str]:
        """The command line that runs the server."""
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def _launch_command(self) -> list[str]:
        return self.command()

    def _inherits(self, variable: str) -> bool:
        return not variable.startswith(("AWS_", "MOTO_")) and not variable.lower().endswith(
            "_proxy"
        )

    def _failure(self, what: str) -> str:
        hint = ""
        if "No module named 'moto'" in self.output():
            hint = " (moto is not installed: pip install 'moto[server]')"
        return f"{self.name}: the S3 server {what}{hint}:\n{self.output()}"

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
