# -*- test-case-name: tests.test_redisserver -*-
"""
A Redis server for tests: Debian's C{redis-server} (package
C{redis-server}) as a process of its own on a free port of 127.0.0.1, with
no persistence (no RDB snapshots, no append-only file), so that what it
holds is gone when it stops.

It can be paused (C{SIGSTOP}) to play an outage in which the server still
accepts connections, since the kernel completes the handshake, but nothing
ever answers; resumed (C{SIGCONT}); killed (C{SIGKILL}) to play a crash,
and restarted on the same port, empty.

L{RedisServerProcess.command} sends one command in RESP over a connection
of its own and decodes the reply (L{ReplyReader}), so tests need no Redis
client library:

    with RedisServerProcess(tmp_path / "redis") as redis:
        redis.command("SET", "key", "value")
        assert redis.command("GET", "key") == b"value"
"""

from __future__ import annotations

import shutil
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from txregistry.testing.process import PausableServerProcess

REDIS_BINARY = "redis-server"

# What a command's arguments may be; each is sent as a bulk string (text
# in UTF-8, numbers as their decimal text).
Argument = str | bytes | int | float


class RedisReplyError(Exception):
    """
    The server answered an error reply (C{-ERR ...}, C{-WRONGPASS ...});
    the exception's message is the reply's text, its first word the kind.
    """

    @property
    def kind(self) -> str:
        """The error's first word: C{ERR}, C{WRONGTYPE}, C{NOAUTH}, ..."""
        return str(self).split(" ", 1)[0]


class RedisProtocolError(Exception):
    """What the server sent is not a RESP2 reply."""


class ReplyReader:
    """
    Reads RESP2 replies from a stream, one per L{read}, whatever the
    chunks the stream comes in: a reply split over many C{recv} calls, or
    several replies in one.

    @param recv: returns up to C{n} more bytes of the stream, C{b""} at its
        end (C{socket.recv}).
    """

    def __init__(self, recv: Callable[[int], bytes]) -> None:
        self._recv = recv
        self._buffer = bytearray()

    def read(self) -> Any:
        """
        The next reply, decoded: a simple string as L{str}, a bulk string
        as L{bytes} (C{None} for the null bulk string), an integer as
        L{int}, an array as a L{list} of its decoded elements (C{None} for
        the null array).

        @raise RedisReplyError: the reply is an error, or an array holding
            one (the first; the whole array is read all the same, so the
            next reply can be read).
        @raise RedisProtocolError: the stream holds something else.
        @raise ConnectionError: the stream ends before the reply does.
        """
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            raise RedisReplyError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return self._integer(rest)
        if kind == b"$":
            length = self._integer(rest)
            if length == -1:
                return None
            if length < -1:
                raise RedisProtocolError(f"a bulk string of length {length}")
            data = self._exactly(length + 2)
            if data[-2:] != b"\r\n":
                raise RedisProtocolError(f"a bulk string of {length} bytes not ending in CRLF")
            return data[:-2]
        if kind == b"*":
            count = self._integer(rest)
            if count == -1:
                return None
            if count < -1:
                raise RedisProtocolError(f"an array of length {count}")
            return self._elements(count)
        raise RedisProtocolError(f"not a RESP2 reply: {bytes(line[:80])!r}")

    def _elements(self, count: int) -> list[Any]:
        elements: list[Any] = []
        error: RedisReplyError | None = None
        for _ in range(count):
            try:
                elements.append(self.read())
            except RedisReplyError as reply:
                # Read the rest, so that the stream stays at a reply's start.
                error = error or reply
                elements.append(None)
        if error is not None:
            raise error
        return elements

    def _integer(self, text: bytes) -> int:
        try:
            return int(text)
        except ValueError:
            raise RedisProtocolError(f"not an integer: {text[:80]!r}") from None

    def _line(self) -> bytes:
        """The next line, without its CRLF."""
        start = 0
        while (end := self._buffer.find(b"\r\n", start)) == -1:
            # A CR at the end may be the first half of a CRLF.
            start = max(len(self._buffer) - 1, 0)
            self._fill()
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _fill(self) -> None:
        chunk = self._recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection before the reply ended")
        self._buffer += chunk


def encode_command(*args: Argument) -> bytes:
    """C{args} as one RESP2 command: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for argument in args:
        if isinstance(argument, bytes):
            data = argument
        elif isinstance(argument, str):
            data = argument.encode("utf-8")
        else:
            data = str(argument).encode("ascii")
        parts += [b"$%d\r\n" % len(data), data, b"\r\n"]
    return b"".join(parts)


class RedisServerProcess(PausableServerProcess):
    """
    C{redis-server} as a process on 127.0.0.1, ready once it answers
    C{PING} with C{PONG}.  Use as a context manager, or call L{start} and
    L{stop}; without Redis installed, L{start} fails naming the package.

    @param password: if given, clients must authenticate: as the default
        user (C{requirepass}), or as C{username} if that is given too.
    @param username: an ACL user allowed everything, with C{password}
        (which it needs); the default user is then turned off, so that a
        client must C{AUTH username password}.
    @param binary: the C{redis-server} executable, a path or a name looked
        up in C{PATH}.
    @ivar workdir: the folder the process runs in, where its log goes.
    @ivar password: what L{command} authenticates with, if not C{None}.
    @ivar username: whom L{command} authenticates as, if not C{None}.
    @ivar log_path: the file the server's output goes to.
    @ivar paused: whether the server is stopped by L{pause}.
    """

    what = "the Redis server"

    def __init__(
        self,
        workdir: Path,
        *,
        name: str = "redis",
        password: str | None = None,
        username: str | None = None,
        binary: str = REDIS_BINARY,
    ) -> None:
        if username is not None and password is None:
            raise ValueError("a Redis username needs a password")
        super().__init__(workdir, name=name)
        self.password = password
        self.username = username
        self.binary = binary

    def __repr__(self) -> str:
        where = self.addr if self.port else "not started"
        return f"<{type(self).__name__} {self.name} at {where}>"

    @property
    def addr(self) -> str:
        """C{127.0.0.1:PORT}, as Redis clients' configs name a server."""
        return f"127.0.0.1:{self.port}"

    # -- the process ---------------------------------------------------------------

    def command_line(self, binary: str) -> list[str]:
        """The command line that runs the server from the executable C{binary}."""
        arguments = [
            binary,
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--dir", str(self.workdir), "--logfile", ""),
            # Nothing on disk: a stopped or killed server comes back empty.
            *("--save", "", "--appendonly", "no"),
        ]
        if self.username is not None:
            # redis-server quotes each argument of a config line, so the
            # password may hold spaces or quotes.
            arguments += ["--user", self.username, "on", f">{self.password}"]
            arguments += ["~*", "&*", "+@all", "--user", "default", "off"]
        elif self.password is not None:
            arguments += ["--requirepass", self.password]
        return arguments

    def _launch_command(self) -> list[str]:
        binary = shutil.which(self.binary)
        if binary is None:
            raise RuntimeError(
                f"{self.name}: {self.binary} is not installed (apt-get install redis-server)"
            )
        return self.command_line(binary)

    def _failure(self, what: str) -> str:
        return f"{self.name}: the Redis server {what}:\n{self.output()}"

    def answers(self, timeout: float = 2.0) -> bool:
        """Whether the server answers C{PING} with C{PONG} within C{timeout} seconds."""
        try:
            return bool(self.command("PING", timeout=timeout) == "PONG")
        except (OSError, RedisReplyError, RedisProtocolError):
            return False

    def kill(self) -> None:
        """
        Kill the process (C{SIGKILL}, paused or not) and wait for it: a
        crash, which loses everything it held.  L{restart} starts it again.
        """
        process = self._signal(signal.SIGKILL)
        process.wait()
        self.paused = False
        super().stop()

    def restart(self, timeout: float = 30.0) -> Self:
        """
        Start the server again on the port it had, empty; stopped first if
        it runs.

        @raise RuntimeError: it was never started, or the start failed
            (see L{start}); the port may have been taken meanwhile.
        """
        if self.process is None:
            raise RuntimeError(f"{self.name}: the Redis server was never started")
        self.stop()
        return self.start(timeout, port=self.port)

    # -- talking to it ------------------------------------------------------------------

    def command(self, *args: Argument, timeout: float = 5.0) -> Any:
        """
        Send the command C{args} (C{"SET", "key", b"value"}) over a new
        connection, after C{AUTH} if a L{password} is set, and return its
        reply, decoded as L{ReplyReader.read} says.

        @param timeout: seconds to connect, and to wait for each part of
            the reply.
        @raise RedisReplyError: the server answered an error, to C{AUTH}
            (C{WRONGPASS ...}) or to the command.
        @raise TimeoutError: it did not answer in time (paused).
        @raise OSError: it could not be reached (stopped, killed).
        @raise RuntimeError: it was never started.
        """
        if not args:
            raise ValueError("a command needs at least its name")
        if self.port == 0:
            raise RuntimeError(f"{self.name}: the Redis server was never started")
        commands: list[tuple[Argument, ...]] = [args]
        if self.password is not None:
            user = () if self.username is None else (self.username,)
            commands.insert(0, ("AUTH", *user, self.password))
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as connection:
            connection.sendall(b"".join(encode_command(*each) for each in commands))
            reader = ReplyReader(connection.recv)
            replies = [reader.read() for _ in commands]
        return replies[-1]

    def keys(self, pattern: str = "*") -> list[str]:
        """
        The keys that match C{pattern} (glob-style), sorted; listed with
        C{SCAN}, which unlike C{KEYS} does not hold the server up.
        """
        found: set[str] = set()
        cursor = b"0"
        while True:
            cursor, batch = self.command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            found.update(key.decode("utf-8", "replace") for key in batch)
            if cursor == b"0":
                return sorted(found)
