# -*- test-case-name: tests.test_plugin_example,tests.test_s3server,tests.test_scale_out -*-
"""
Servers as real processes on 127.0.0.1 for tests: L{ServerProcess}, what
every one of them shares (a free port, a log file, waiting until it
answers, stopping it); and registries, txregistry (C{twist registry})
and the reference, Distribution's C{docker-registry}, each with its own
config file and data folder (L{RegistryProcess}).
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Self

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


class ServerProcess:
    """
    A server as a process of its own on a free port of 127.0.0.1, its
    output in a log file.  Use as a context manager, or call L{start} and
    L{stop}.

    A subclass says how to run it (L{_launch_command}), which of our
    environment variables it keeps (L{_inherits}), and may change how it
    is judged ready (L{ready_path}, L{ready_status}), how a failed start
    is told (L{_failure}) and how it is stopped (L{_terminate}).

    @ivar workdir: the folder the process runs in.
    @ivar name: what messages call it; its log is C{NAME.log} by default.
    @ivar env: environment variables for the process, set over the ones
        it inherits.
    @ivar port: the port it listens on once started.
    @ivar url: C{http://127.0.0.1:PORT} once started.
    @ivar log_path: the file its output goes to.
    @ivar process: the process once started.
    """

    # What L{answers} asks for, and the status that means ready (None:
    # any answer will do).
    ready_path = "/"
    ready_status: int | None = None
    # Whether the process leads a session of its own, so that its whole
    # process group can be signalled.
    new_session = False

    def __init__(
        self,
        workdir: Path,
        *,
        name: str,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.name = name
        self.env = env
        self.port = 0
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"{name}.log" if log_path is None else log_path
        self._log: IO[bytes] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} at {self.url or 'not started'}>"

    # -- what a subclass says ------------------------------------------------------

    def _launch_command(self) -> list[str]:
        """
        Write what the process needs (a config file) now that L{port} is
        chosen, and return its command line.
        """
        raise NotImplementedError

    def _inherits(self, variable: str) -> bool:
        """Whether the process keeps our environment variable C{variable}; all by default."""
        return True

    def _failure(self, what: str) -> str:
        """The message of a start that failed because the process C{what}."""
        return f"{self.name} {what}:\n{self.output()}"

    def _terminate(self, process: subprocess.Popen[bytes]) -> None:
        """
        Make the running C{process} exit and wait for it: C{SIGTERM}, then
        C{SIGKILL} after 10 s.
        """
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    # -- the process ---------------------------------------------------------------

    def start(self, timeout: float = 30.0, *, port: int | None = None) -> Self:
        """
        Start the process and wait until it L{answers}.

        @param port: the port it is to listen on; a free one by default.
            A restart passes the one of before, so that clients find it
            where they found it.
        @raise RuntimeError: the process exited, or did not answer within
            C{timeout} seconds (then it is stopped); the message ends with
            what it logged (L{output}).
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port() if port is None else port
        self.url = f"http://127.0.0.1:{self.port}"
        command = self._launch_command()
        environment = {key: value for key, value in os.environ.items() if self._inherits(key)}
        environment.update(self.env or {})
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            command,
            cwd=self.workdir,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=self.new_session,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                returncode = self.process.returncode
                self.stop()
                raise RuntimeError(self._failure(f"exited with {returncode}"))
            if self.answers(timeout=2.0):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(self._failure(f"did not answer within {timeout}s"))

    @property
    def running(self) -> bool:
        """Whether the process is started and has not exited."""
        return self.process is not None and self.process.poll() is None

    def answers(self, timeout: float = 2.0) -> bool:
        """
        Whether the server answers C{GET} L{ready_path} within C{timeout}
        seconds (with L{ready_status}, if set).
        """
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                connection.request("GET", self.ready_path)
                response = connection.getresponse()
                response.read()
            finally:
                connection.close()
        except OSError:
            return False
        return self.ready_status is None or response.status == self.ready_status

    def output(self, lines: int | None = 40) -> str:
        """The last C{lines} lines the process logged; everything for C{None}."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        if lines is None:
            return text
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the process if it runs (L{_terminate}), and close its log; again does nothing."""
        process = self.process
        if process is not None and process.poll() is None:
            self._terminate(process)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class PausableServerProcess(ServerProcess):
    """
    A server that can be paused (C{SIGSTOP}) to play an outage in which it
    still accepts connections, since the kernel completes the handshake,
    but answers nothing; and resumed (C{SIGCONT}).

    @ivar what: what messages call the server (C{"the S3 server"}).
    @ivar paused: whether the server is stopped by L{pause}.
    """

    what = "the server"
    paused = False

    def pause(self) -> None:
        """
        Stop the process (C{SIGSTOP}): connections are still accepted, by
        the kernel, but nothing is answered until L{resume}.
        """
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """Let a paused process run again (C{SIGCONT}); it answers what was sent meanwhile."""
        self._signal(signal.SIGCONT)
        self.paused = False

    def _signal(self, number: signal.Signals) -> subprocess.Popen[bytes]:
        if self.process is None or not self.running:
            raise RuntimeError(f"{self.name}: {self.what} is not running")
        self.process.send_signal(number)
        return self.process

    def stop(self) -> None:
        """Stop the server (resumed first if paused; SIGTERM, then SIGKILL after 10 s)."""
        if self.paused and self.running:
            # A stopped process would only act on SIGTERM once continued.
            self.resume()
        super().stop()
        self.paused = False


class RegistryProcess(ServerProcess):
    """
    One registry process, ready once C{GET /v2/} answers.  Use as a
    context manager, or call C{start} and C{stop}.

    @ivar url: C{http://127.0.0.1:PORT} once started.
    @ivar log_path: where the process's output goes.
    @ivar args: more arguments for the registry's command line
        (C{["--workers", "2"]}).
    @ivar env: environment variables for the process, set over ours less
        the C{REGISTRY_*} ones (which would override its config).
    """

    ready_path = "/v2/"

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
        super().__init__(
            workdir, name=name or ("reference" if reference else "txregistry"), env=env
        )
        self.args = list(args or [])
        self.config = config
        self.reference = reference

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

    def _launch_command(self) -> list[str]:
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
        return command

    def _inherits(self, variable: str) -> bool:
        # REGISTRY_* would override the config; AWS_* (credentials, a CA
        # bundle, which Distribution's s3 driver refuses over plain HTTP)
        # would let the machine's settings into the storage under test.
        return not variable.startswith(("REGISTRY_", "AWS_"))

    def output(self, lines: int | None = None) -> str:
        """What the process printed so far: all of it, or the last C{lines} lines."""
        return super().output(lines)
