# -*- test-case-name: tests.test_drivers -*-
"""
Listing every file of a directory tree for the filesystem driver
(L{txregistry.interfaces.IFileLister}), in a process of its own.

Listing is Python work between short system calls: in the registry's
process it holds the GIL, so the reactor and the other listing thread wait
for it, and two trees listed at once take as long as one after the other.
Each listing thread of the filesystem driver hands its trees to a helper
process running this file as a script (L{ListingProcess}), which lists
them on another CPU: at 200 repositories and 20 000 blobs, the first walk
of a garbage collection went from 1.2-1.4 s to 0.8 s.  Only the standard
library is imported here, so a helper starts in a few milliseconds.

The helper reads requests from its standard input, one JSON line each
(C{{"top": folder, "skip": [names], "hidden": folder or null}}), and
answers each with a header line C{<status> <length>} and C{length} bytes:
status C{files}, NUL-separated (path, size, modification time) triples;
C{missing}, C{top} is not a folder; C{error}, the error's message.  It
exits at the end of its input.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
from collections.abc import Collection, Iterator
from typing import IO

# One listed file: its path, size in bytes and modification time.
Entry = tuple[str, int, float]


def walk_files(top: str, skip: Collection[str], hidden: str | None) -> Iterator[Entry]:
    """
    Every file below folder C{top}, in no particular order; nothing below a
    folder whose name is in C{skip}, or below the folder C{hidden}.  A file
    or folder removed while the tree is read is left out.

    @raise FileNotFoundError: C{top} is not a folder.
    """
    if not os.path.isdir(top):
        raise FileNotFoundError(errno.ENOENT, "no such directory", top)
    pending = [top]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir():
                        if entry.name not in skip and entry.path != hidden:
                            pending.append(entry.path)
                        continue
                    try:
                        result = entry.stat()
                    except FileNotFoundError:
                        continue  # removed meanwhile
                    yield entry.path, result.st_size, result.st_mtime
        except (FileNotFoundError, NotADirectoryError):
            continue  # removed meanwhile


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _answer(request: bytes) -> tuple[bytes, bytes]:
    """The status and payload answering one request line."""
    try:
        asked = json.loads(request)
        fields: list[bytes] = []
        for path, size, modified in walk_files(asked["top"], asked["skip"], asked["hidden"]):
            fields += (_encode(path), b"%d" % size, repr(modified).encode("ascii"))
    except FileNotFoundError:
        return b"missing", b""
    except Exception as error:  # anything else is the caller's to raise
        return b"error", _encode(f"{type(error).__name__}: {error}")
    return b"files", b"\0".join(fields)


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """Answer every request line of C{requests} on C{answers}, until the end of input."""
    for request in requests:
        status, payload = _answer(request)
        answers.write(b"%s %d\n" % (status, len(payload)))
        answers.write(payload)
        answers.flush()


class ListingFailed(Exception):
    """The helper process could not be started, or stopped answering."""


class ListingProcess:
    """
    A helper process that lists trees (see the module's documentation),
    started on first use and again after it dies; used by one thread at a
    time.  It exits when its standard input closes: at L{stop}, or when
    the registry's process ends, however it ends.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            try:
                # -I -S: nothing from the environment, the user's site or
                # site-packages; this file needs none of it.
                self._process = subprocess.Popen(
                    [sys.executable, "-I", "-S", os.path.abspath(__file__)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
            except OSError as error:
                raise ListingFailed(f"cannot start the listing process: {error}") from None
        return self._process

    def list(self, top: str, skip: Collection[str], hidden: str | None) -> list[Entry]:
        """
        The files below C{top}, as L{walk_files} lists them.

        @raise FileNotFoundError: C{top} is not a folder.
        @raise OSError: listing failed.
        @raise ListingFailed: the helper died, or could not be started;
            it is stopped, and started again at the next call.
        """
        process = self._started()
        assert process.stdin is not None and process.stdout is not None
        request = json.dumps({"top": top, "skip": sorted(skip), "hidden": hidden})
        try:
            process.stdin.write(_encode(request) + b"\n")
            process.stdin.flush()
            status, length = process.stdout.readline().split()
            payload = process.stdout.read(int(length))
            if len(payload) != int(length):
                raise ValueError("short answer")
        except (OSError, ValueError) as error:
            self.stop()
            raise ListingFailed(f"the listing process stopped answering: {error}") from None
        if status == b"missing":
            raise FileNotFoundError(errno.ENOENT, "no such directory", top)
        if status == b"error":
            raise OSError(payload.decode("utf-8", "replace"))
        if not payload:
            return []
        fields = payload.split(b"\0")
        return [
            (
                fields[at].decode("utf-8", "surrogateescape"),
                int(fields[at + 1]),
                float(fields[at + 2]),
            )
            for at in range(0, len(fields), 3)
        ]

    def stop(self) -> None:
        """End the helper (it exits when its input closes), and reap it."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.close()
            process.stdout.close()
            process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()


class ListingProcesses:
    """
    One L{ListingProcess} per thread that lists (the filesystem driver's
    listing pool), all stopped by L{stop_all} (at the interpreter's exit).
    """

    def __init__(self) -> None:
        self._mine = threading.local()
        self._all: list[ListingProcess] = []
        self._lock = threading.Lock()

    def for_this_thread(self) -> ListingProcess:
        """The calling thread's helper."""
        process: ListingProcess | None = getattr(self._mine, "process", None)
        if process is None:
            process = self._mine.process = ListingProcess()
            with self._lock:
                self._all.append(process)
        return process

    def stop_all(self) -> None:
        """Stop every helper (one used again starts again)."""
        with self._lock:
            processes = list(self._all)
        for process in processes:
            process.stop()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
