# -*- test-case-name: tests.test_scale_out -*-
"""
nginx as a round-robin load balancer for tests: Debian's C{/usr/sbin/nginx}
(package C{nginx-light}) as a process on a free port of 127.0.0.1, in front
of several registry processes, with everything it writes (config, logs,
pid file, temporary files) in a work folder of its own.

What it does to requests is what a registry behind a load balancer must
cope with:

  - each request goes to the next upstream in turn, whatever connection
    it came on: nginx opens a new upstream connection per request (no
    upstream keepalive), so nothing pins a client to one process;
  - a failed request is not retried on another upstream, and a failed
    upstream is not taken out of the rotation, so each process's own
    answers reach the client;
  - bodies stream both ways, with no size limit (C{client_max_body_size
    0}, C{proxy_request_buffering off}, C{proxy_buffering off}, HTTP/1.1 to
    the upstreams, so chunked uploads stay chunked);
  - the client's C{Host} header is passed through, so the registries build
    C{Location} URLs that point back at nginx.

Its access log names the upstream that answered each request
(L{NginxProcess.log_entries}).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from txregistry.testing.process import ServerProcess

NGINX_BINARY = "/usr/sbin/nginx"

# A path nginx answers itself, so that waiting for it to start sends no
# request upstream (which would shift the round-robin).
READY_PATH = "/.txregistry-nginx-ready"

_TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


@dataclass(frozen=True)
class ProxiedRequest:
    """
    One request as nginx's access log records it.

    @ivar upstream: C{127.0.0.1:PORT} of the upstream that answered, or
        C{""} for a request nginx answered itself.
    """

    method: str
    uri: str
    status: int
    upstream: str


class NginxProcess(ServerProcess):
    """
    nginx balancing requests over C{upstreams} round-robin, ready once it
    answers a path of its own (so no request goes upstream).  Use as a
    context manager, or call L{start} and L{stop}: L{stop} shuts it down
    gracefully, then fast, then kills its process group (L{_terminate}).
    Without nginx installed, L{start} fails naming the package.

    @param upstreams: the base URLs of the upstreams, C{http://HOST:PORT}.
    @param timeout: how many seconds nginx waits for an upstream to send
        or take the next bytes (C{proxy_read_timeout},
        C{proxy_send_timeout}) before it answers 504 itself; nginx's
        default is 60.
    @param binary: the nginx executable.
    @ivar url: C{http://127.0.0.1:PORT} once started.
    @ivar host: C{127.0.0.1:PORT}, as image references name it.
    @ivar log_path: nginx's error log (its output goes there too).
    @ivar access_log_path: one line per request, naming the upstream.
    """

    ready_path = READY_PATH
    ready_status = 204
    # A session of its own: if the master must be killed, its workers go
    # with it (killed as a process group), never orphaned.
    new_session = True

    def __init__(
        self,
        workdir: Path,
        upstreams: Sequence[str],
        *,
        name: str = "nginx",
        timeout: float = 60.0,
        binary: str = NGINX_BINARY,
    ) -> None:
        if not upstreams:
            raise ValueError("nginx needs at least one upstream")
        super().__init__(workdir, name=name, log_path=Path(workdir) / "error.log")
        self.upstreams = [_host_port(url) for url in upstreams]
        self.timeout = timeout
        self.binary = binary
        self.host = ""
        self.config_path = self.workdir / "nginx.conf"
        self.access_log_path = self.workdir / "access.log"

    # -- the config ---------------------------------------------------------------

    def config(self) -> str:
        """The text of the config file."""
        work = self.workdir
        # Workers of a master running as root switch to "nobody", who
        # could not write in a private work folder; keep them as we are.
        user = ""
        if os.geteuid() == 0:
            user = f"user {pwd.getpwuid(0).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
        temp_paths = "\n".join(
            f"    {kind}_temp_path {work / 'temp' / kind};" for kind in _TEMP_KINDS
        )
        servers = "\n".join(f"        server {host} max_fails=0;" for host in self.upstreams)
        return f"""\
daemon off;
master_process on;
worker_processes 1;
pid {work / "nginx.pid"};
error_log {self.log_path} notice;
{user}

events {{
    worker_connections 1024;
}}

http {{
{temp_paths}
    log_format upstreams '$request_method\\t$request_uri\\t$status\\t$upstream_addr';
    access_log {self.access_log_path} upstreams;
    client_max_body_size 0;

    upstream registries {{
{servers}
    }}

    server {{
        listen 127.0.0.1:{self.port};

        location = {READY_PATH} {{
            access_log off;
            return 204;
        }}

        location / {{
            proxy_pass http://registries;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout {round(self.timeout * 1000)}ms;
            proxy_send_timeout {round(self.timeout * 1000)}ms;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_redirect off;
            proxy_next_upstream off;
        }}
    }}
}}
"""

    # -- the process ---------------------------------------------------------------

    def command(self) -> list[str]:
        """
        The command line that runs nginx: the work folder as its prefix,
        its error log there from the start (before the config is read).
        """
        return [
            self.binary,
            *("-p", str(self.workdir), "-e", str(self.log_path), "-c", str(self.config_path)),
        ]

    def _launch_command(self) -> list[str]:
        if shutil.which(self.binary) is None:
            raise RuntimeError(f"{self.binary} is not installed (apt-get install nginx-light)")
        for kind in _TEMP_KINDS:
            (self.workdir / "temp" / kind).mkdir(parents=True, exist_ok=True)
        self.host = f"127.0.0.1:{self.port}"
        self.config_path.write_text(self.config())
        return self.command()

    def _terminate(self, process: subprocess.Popen[bytes]) -> None:
        """
        A graceful shutdown (C{SIGQUIT}: requests in progress finish), then
        a fast one (C{SIGTERM}) after 10 s, then C{SIGKILL} to its process
        group.
        """
        for number, wait in ((signal.SIGQUIT, 10.0), (signal.SIGTERM, 5.0)):
            process.send_signal(number)
            try:
                process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    # -- the access log ------------------------------------------------------------------

    def log_mark(self) -> int:
        """Where the access log ends now: pass it to L{log_entries} as C{since}."""
        try:
            return self.access_log_path.stat().st_size
        except OSError:
            return 0

    def log_entries(
        self, since: int = 0, at_least: int = 0, timeout: float = 5.0
    ) -> list[ProxiedRequest]:
        """
        The requests logged after C{since} (a L{log_mark}), oldest first.
        nginx writes a request's line only after the response has gone
        out, so a client may see its answer first: this waits up to
        C{timeout} seconds for C{at_least} entries.
        """
        deadline = time.monotonic() + timeout
        while True:
            entries = self._read_entries(since)
            if len(entries) >= at_least or time.monotonic() >= deadline:
                return entries
            time.sleep(0.02)

    def _read_entries(self, since: int) -> list[ProxiedRequest]:
        try:
            with open(self.access_log_path, "rb") as log:
                log.seek(since)
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return []
        # A line still being written is left for the next call.
        text = text[: text.rfind("\n") + 1]
        entries = []
        for line in text.splitlines():
            method, uri, status, upstream = line.split("\t")
            entries.append(
                ProxiedRequest(method, uri, int(status), "" if upstream == "-" else upstream)
            )
        return entries


def _host_port(url: str) -> str:
    """C{HOST:PORT} of an C{http://HOST:PORT} URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        raise ValueError(f"an upstream must be http://HOST:PORT, not {url!r}")
    if parts.path not in ("", "/"):
        raise ValueError(f"an upstream has no path: {url!r}")
    return f"{parts.hostname}:{parts.port}"
