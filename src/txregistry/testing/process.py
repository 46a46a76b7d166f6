# -*- test-case-name: tests.test_api -*-
"""
Registries as real processes on 127.0.0.1: txregistry (C{twist registry})
and the reference, Distribution's C{docker-registry}, each with its own
config file and data folder, on a free port.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import yaml

REFERENCE_BINARY = "docker-registry"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def base_config(root: Path, **overrides: Any) -> dict[str, Any]:
    """
    A config document with filesystem storage under C{root}, deletes
    enabled, and a fixed secret; C{overrides} replace top-level sections.
    """
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
        },
        "http": {"addr": "127.0.0.1:0", "secret": "test-secret"},
    }
    config.update(overrides)
    return config


class RegistryProcess:
    """
    One registry process.  Use as a context manager, or call C{start} and
    C{stop}.

    @ivar url: C{http://127.0.0.1:PORT} once started.
    @ivar log_path: where the process's output goes.
    @ivar args: more arguments for the registry's command line
        (C{["--workers", "2"]}).
    """

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any] | None,
        *,
        reference: bool = False,
        env: dict[str, str] | None = None,
        name: str | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.args = list(args or [])
        self.config = config
        self.reference = reference
        self.env = env
        self.name = name or ("reference" if reference else "txregistry")
        self.port = 0
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"{self.name}.log"
        self._log: IO[bytes] | None = None

    def command(self, config_path: Path | None) -> list[str]:
        """The command line that runs this registry."""
        if self.reference:
            binary = shutil.which(REFERENCE_BINARY)
            if binary is None:
                raise RuntimeError(
                    f"{REFERENCE_BINARY} is not installed (apt-get install docker-registry)"
                )
            return [binary, "serve", str(config_path)]
        command = [sys.executable, "-m", "twisted", "registry"]
        if config_path is not None:
            command += ["--config", str(config_path)]
        return command

    def start(self, timeout: float = 30.0) -> RegistryProcess:
        """Start the process and wait until C{GET /v2/} answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config_path: Path | None = None
        if self.config is not None:
            document = dict(self.config)
            document["http"] = dict(document.get("http") or {})
            document["http"]["addr"] = f"127.0.0.1:{self.port}"
            config_path = self.workdir / f"{self.name}-config.yml"
            config_path.write_text(yaml.safe_dump(document))
        command = self.command(config_path) + self.args
        if self.config is None:
            command += ["--listen", f"tcp:{self.port}:interface=127.0.0.1"]
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("REGISTRY_")
        }
        environment.update(self.env or {})
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            command,
            cwd=self.workdir,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.output()}"
                )
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/v2/")
                connection.getresponse().read()
                connection.close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        """What the process printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> RegistryProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
