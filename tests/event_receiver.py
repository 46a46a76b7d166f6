# -*- test-case-name: tests.test_event_receiver -*-
"""
A receiver of notifications (webhooks) for tests: an HTTP server, run as a
process of its own, that records what the registry sends it and can be told
to fail, or to be slow, while it runs.  Standard library only.

    python tests/event_receiver.py --port 0 --record FILE --control-port-file PORTFILE

It listens on 127.0.0.1 only, at C{--port} (0: a free one; a given port is
bound with C{SO_REUSEADDR}, so a receiver can come back up where a stopped
one was), and writes the port it got to PORTFILE, atomically (a temporary
file renamed), once it accepts connections.  C{SIGTERM} stops it; it exits 0.

Events: a C{POST} to any path but C{/_control}.  The receiver reads the body
(C{Content-Length}, or chunked), waits C{delay} seconds, and then either
answers 500 (while C{fail_next} is above 0, which counts down) or the
configured C{status}.  Only a 2xx answer is recorded, before it is sent: one
JSON line appended to FILE and flushed,

    {"path": "/events", "headers": {"Content-Type": "...", ...},
     "body": <the body parsed as JSON, or its text if it does not parse>,
     "received": <time.time()>}

so that once a client has its 2xx, the line is in the file.  A reader should
ignore a last line without its newline: it is being written.

Control: C{GET} or C{POST /_control?SETTING=VALUE&...} changes the settings
for the event requests that arrive after it, and answers 200 with all of
them as JSON (no query: only read them; a bad name or value: 400):

  - C{status=500}: answer every event with that status (200 is normal);
  - C{delay=2.0}: wait that many seconds before answering each event;
  - C{fail_next=3}: answer the next 3 events 500, then C{status} again.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

CONTROL_PATH = "/_control"


class Settings:
    """What the event requests are answered, changed through C{/_control}; thread-safe."""

    # A setting's name and how its value is read from a query string.
    PARSERS = {"status": int, "delay": float, "fail_next": int}

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.status = 200
        self.delay = 0.0
        self.fail_next = 0

    def update(self, changes: dict[str, str]) -> dict[str, Any]:
        """
        Apply C{changes} (names and query-string values), all or none, and
        return every setting.

        @raise ValueError: an unknown name, or a value out of range.
        """
        values: dict[str, float] = {}
        for name, text in changes.items():
            if name not in self.PARSERS:
                raise ValueError(f"unknown setting {name!r}")
            values[name] = self.PARSERS[name](text)
        if not 100 <= values.get("status", 200) <= 599:
            raise ValueError("status must be within 100..599")
        if values.get("delay", 0) < 0 or values.get("fail_next", 0) < 0:
            raise ValueError("delay and fail_next cannot be negative")
        with self._lock:
            for name, value in values.items():
                setattr(self, name, value)
            return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        """Every setting, by name."""
        return {"status": self.status, "delay": self.delay, "fail_next": self.fail_next}

    def next_answer(self) -> tuple[float, int]:
        """The delay and the status of the event request that just arrived."""
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return self.delay, 500
            return self.delay, self.status


class Record:
    """The file of recorded events, one JSON line each, appended by any thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, entry: dict[str, Any]) -> None:
        """Append C{entry} as one line, flushed before this returns."""
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as record:
            record.write(line)
            record.flush()


class ReceiverServer(ThreadingHTTPServer):
    """The server, with the receiver's state for its handlers."""

    def __init__(self, port: int, settings: Settings, record: Record) -> None:
        self.settings = settings
        self.record = record
        super().__init__(("127.0.0.1", port), EventHandler)


class EventHandler(BaseHTTPRequestHandler):
    """Answers event POSTs and C{/_control}."""

    # Keep-alive, as a webhook endpoint would: the client's connection pool
    # is exercised, and loses its connections when the receiver restarts.
    protocol_version = "HTTP/1.1"
    server: ReceiverServer

    def do_GET(self) -> None:
        if urlsplit(self.path).path == CONTROL_PATH:
            self.control()
        else:
            self.answer(404, {"error": "events are POSTed; GET only /_control"})

    def do_POST(self) -> None:
        body = self.read_body()
        if urlsplit(self.path).path == CONTROL_PATH:
            self.control()
            return
        delay, status = self.server.settings.next_answer()
        if delay:
            time.sleep(delay)
        if 200 <= status < 300:
            self.server.record.append(
                {
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": parsed(body),
                    "received": time.time(),
                }
            )
        self.answer(status, {"status": status})

    def control(self) -> None:
        query = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        try:
            settings = self.server.settings.update(query)
        except ValueError as error:
            self.answer(400, {"error": str(error)})
        else:
            self.answer(200, settings)

    def read_body(self) -> bytes:
        """The request's body, sent with a C{Content-Length} or chunked."""
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(chunks)

    def answer(self, status: int, document: dict[str, Any]) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def parsed(body: bytes) -> Any:
    """C{body} as JSON, or as text if it is not JSON."""
    text = body.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def write_atomically(path: str, text: str) -> None:
    """Write C{text} to C{path} so that a reader sees all of it or no file."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> None:
    """Run the receiver until C{SIGTERM}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--record", required=True, help="the file events are appended to")
    parser.add_argument("--control-port-file", required=True, help="where the port is written")
    options = parser.parse_args(argv)

    server = ReceiverServer(options.port, Settings(), Record(options.record))
    # shutdown() waits for serve_forever() to return, so it cannot run in
    # the signal handler, which interrupts serve_forever() in this thread.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    write_atomically(options.control_port_file, f"{server.server_address[1]}\n")
    try:
        # It sees a shutdown request when it next polls: stop within 50 ms.
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
