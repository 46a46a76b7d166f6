"""
The Redis server harness itself (L{txregistry.testing.redisserver}): it
starts C{redis-server} with nothing on disk and waits until it answers
C{PING}, sends commands and decodes their replies (a RESP2 reader, tested
on its own over streams cut every which way), authenticates with a
password or as an ACL user, pauses and resumes the server (a paused server
accepts connections and answers nothing), kills it and restarts it on the
same port, empty, stops it even while paused, and says why when a start
fails, with the end of the server's log, or what to install.

The module has a server of its own, since it pauses it.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from txregistry.testing.redisserver import (
    RedisProtocolError,
    RedisReplyError,
    RedisServerProcess,
    ReplyReader,
    encode_command,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServerProcess]:
    """A server of the module's own."""
    with RedisServerProcess(tmp_path_factory.mktemp("redis"), name="harness") as running:
        yield running


# -- the reader, on its own ----------------------------------------------------------


def stream(data: bytes, size: int) -> Callable[[int], bytes]:
    """A C{recv} that gives C{data} C{size} bytes at a time, then its end."""
    chunks = [data[start : start + size] for start in range(0, len(data), size)]

    def recv(limit: int) -> bytes:
        return chunks.pop(0) if chunks else b""

    return recv


NESTED = (
    b"*6\r\n+OK\r\n:-42\r\n$5\r\nhe\r\no\r\n$-1\r\n*-1\r\n"
    b"*3\r\n$0\r\n\r\n*0\r\n*1\r\n:7\r\n"
    b"+second\r\n"
)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 65536])
def test_reader_any_chunks(size: int) -> None:
    """
    Every kind of reply decodes, nested, whatever the chunks the stream
    comes in (a CRLF split between two, a CRLF inside a bulk string), and
    a reply that follows in the same chunk is read next.
    """
    reader = ReplyReader(stream(NESTED, size))
    assert reader.read() == ["OK", -42, b"he\r\no", None, None, [b"", [], [7]]]
    assert reader.read() == "second"


def test_reader_error_reply() -> None:
    """An error reply raises, with its text; the reply after it is read next."""
    reader = ReplyReader(stream(b"-WRONGTYPE Operation against a key\r\n:1\r\n", 4))
    with pytest.raises(RedisReplyError, match=r"^WRONGTYPE Operation against a key$") as caught:
        reader.read()
    assert caught.value.kind == "WRONGTYPE"
    assert reader.read() == 1


def test_reader_error_in_array() -> None:
    """An error inside an array raises the first, once the whole array is read."""
    reader = ReplyReader(stream(b"*3\r\n-ERR one\r\n:2\r\n-ERR three\r\n+next\r\n", 5))
    with pytest.raises(RedisReplyError, match=r"^ERR one$"):
        reader.read()
    assert reader.read() == "next"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"!oops\r\n", "not a RESP2 reply: b'!oops'"),
        (b"\r\n", "not a RESP2 reply: b''"),
        (b":12a\r\n", "not an integer: b'12a'"),
        (b"$x\r\n", "not an integer: b'x'"),
        (b"$3\r\nabcde\r\n", "a bulk string of 3 bytes not ending in CRLF"),
        (b"$-2\r\n", "a bulk string of length -2"),
        (b"*-5\r\n", "an array of length -5"),
    ],
)
def test_reader_not_resp(data: bytes, message: str) -> None:
    """What is not a RESP2 reply is refused, saying what was wrong."""
    with pytest.raises(RedisProtocolError) as caught:
        ReplyReader(stream(data, 3)).read()
    assert str(caught.value) == message


@pytest.mark.parametrize("data", [b"", b"+OK", b"+OK\r", b"$5\r\nabc", b"*2\r\n:1\r\n"])
def test_reader_stream_ends(data: bytes) -> None:
    """A stream that ends before the reply does is a L{ConnectionError}."""
    with pytest.raises(ConnectionError, match="closed the connection before the reply ended"):
        ReplyReader(stream(data, 2)).read()


def test_encode_command() -> None:
    """Each argument is a bulk string: text in UTF-8, bytes as they are, numbers as text."""
    assert encode_command("SET", "kéy", b"\x00\r\n", 12, 1.5, "") == (
        b"*6\r\n$3\r\nSET\r\n$4\r\nk\xc3\xa9y\r\n$3\r\n\x00\r\n\r\n"
        b"$2\r\n12\r\n$3\r\n1.5\r\n$0\r\n\r\n"
    )


# -- the server ----------------------------------------------------------------------


def test_started(server: RedisServerProcess) -> None:
    """
    The server listens on 127.0.0.1 at the port it was given, logs to its
    file, and keeps nothing on disk.
    """
    assert server.addr == f"127.0.0.1:{server.port}"
    assert repr(server) == f"<RedisServerProcess harness at {server.addr}>"
    assert server.answers()
    assert server.running
    assert server.log_path.parent == server.workdir
    assert "Ready to accept connections" in server.output()
    assert server.command("CONFIG", "GET", "save") == [b"save", b""]
    assert server.command("CONFIG", "GET", "appendonly") == [b"appendonly", b"no"]
    assert server.command("CONFIG", "GET", "bind") == [b"bind", b"127.0.0.1"]
    assert server.command("CONFIG", "GET", "dir") == [b"dir", str(server.workdir).encode()]


def test_round_trips(server: RedisServerProcess) -> None:
    """Commands of each kind of reply go through L{command}, and come back decoded."""
    assert server.command("PING") == "PONG"
    assert server.command("SET", "trip:string", b"\x00value\r\n") == "OK"
    assert server.command("GET", "trip:string") == b"\x00value\r\n"
    assert server.command("GET", "trip:missing") is None
    assert server.command("HSET", "trip:hash", "a", "1", "b", 2) == 2
    assert server.command("HMGET", "trip:hash", "a", "missing", "b") == [b"1", None, b"2"]
    assert server.command("SADD", "trip:set", "x", "y", "x") == 2
    assert server.command("SISMEMBER", "trip:set", "x") == 1
    assert server.command("SISMEMBER", "trip:set", "z") == 0
    assert server.command("BLPOP", "trip:nothing", "0.01") is None


def test_keys(server: RedisServerProcess) -> None:
    """L{keys} lists the keys that match, sorted, over as many SCAN calls as it takes."""
    for number in range(2500):
        server.command("SET", f"many:{number:04}", "")
    server.command("SET", "other", "")
    listed = server.keys("many:*")
    assert listed == [f"many:{number:04}" for number in range(2500)]
    assert "other" in server.keys()
    assert server.keys("nothing:*") == []


def test_error_reply(server: RedisServerProcess) -> None:
    """An error reply raises L{RedisReplyError}, naming the error; the server goes on."""
    server.command("SET", "error:string", "text")
    with pytest.raises(RedisReplyError, match=r"^WRONGTYPE ") as caught:
        server.command("HGET", "error:string", "field")
    assert caught.value.kind == "WRONGTYPE"
    with pytest.raises(RedisReplyError, match=r"^ERR unknown command 'NOSUCHCOMMAND'"):
        server.command("NOSUCHCOMMAND")
    assert server.command("PING") == "PONG"


def test_command_needs_a_name(server: RedisServerProcess) -> None:
    """A command with no arguments at all is refused before anything is sent."""
    with pytest.raises(ValueError, match="at least its name"):
        server.command()


def test_pause_and_resume(server: RedisServerProcess) -> None:
    """
    A paused server accepts the connection but answers nothing: a command
    times out.  Resumed, it answers again, with what it held before.
    """
    server.command("SET", "pause:kept", "kept")
    server.pause()
    try:
        assert server.paused
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            server.command("GET", "pause:kept", timeout=1.0)
        assert 0.9 < time.monotonic() - started < 10
        assert not server.answers(timeout=0.5)
    finally:
        server.resume()
    assert not server.paused
    assert server.answers()
    assert server.command("GET", "pause:kept") == b"kept"


def test_password(tmp_path: Path) -> None:
    """
    With a password, L{command} authenticates as the default user; without
    it a command is refused, and so is a wrong password.
    """
    with RedisServerProcess(tmp_path, password="s3cret") as server:
        assert server.command("ACL", "WHOAMI") == b"default"
        assert server.command("CONFIG", "GET", "requirepass") == [b"requirepass", b"s3cret"]
        server.password = None
        with pytest.raises(RedisReplyError) as caught:
            server.command("PING")
        assert caught.value.kind == "NOAUTH"
        server.password = "wrong"
        with pytest.raises(RedisReplyError) as caught:
            server.command("PING")
        assert caught.value.kind == "WRONGPASS"
        assert not server.answers()


def test_username(tmp_path: Path) -> None:
    """
    With a username, L{command} authenticates as that ACL user, whose
    password may hold spaces and quotes; the default user is off, so the
    password alone is refused, as are a wrong password and no AUTH at all.
    """
    password = "two words \"'"
    with RedisServerProcess(tmp_path, username="alice", password=password) as server:
        assert server.command("ACL", "WHOAMI") == b"alice"
        assert server.command("SET", "owned", "yes") == "OK"
        server.username = None
        with pytest.raises(RedisReplyError) as caught:
            server.command("PING")
        assert caught.value.kind == "WRONGPASS"
        server.username, server.password = "alice", "wrong"
        with pytest.raises(RedisReplyError) as caught:
            server.command("PING")
        assert caught.value.kind == "WRONGPASS"
        server.password = None
        with pytest.raises(RedisReplyError) as caught:
            server.command("PING")
        assert caught.value.kind == "NOAUTH"


def test_username_needs_password(tmp_path: Path) -> None:
    """An ACL user without a password is refused at once."""
    with pytest.raises(ValueError, match="username needs a password"):
        RedisServerProcess(tmp_path, username="alice")


def test_kill_and_restart(tmp_path: Path) -> None:
    """
    A killed server is gone at once (SIGKILL), its port refuses
    connections; restarted, it listens on the same port, empty.
    """
    with RedisServerProcess(tmp_path) as server:
        port = server.port
        server.command("SET", "lost", "soon")
        process = server.process
        assert process is not None
        server.kill()
        assert process.returncode == -signal.SIGKILL
        assert not server.running
        with pytest.raises(ConnectionRefusedError):
            server.command("PING")
        assert server.restart() is server
        assert server.running
        assert server.process is not process
        assert server.port == port
        assert server.command("GET", "lost") is None
        assert server.keys() == []
        assert server.output(None).count("Ready to accept connections") == 2


def test_restart_while_running(tmp_path: Path) -> None:
    """A server that runs is stopped first, and comes back empty on its port."""
    with RedisServerProcess(tmp_path) as server:
        port = server.port
        server.command("SET", "lost", "soon")
        server.restart()
        assert server.port == port
        assert server.keys() == []


def test_kill_while_paused(tmp_path: Path) -> None:
    """A paused server is killed all the same, and is no longer paused."""
    with RedisServerProcess(tmp_path) as server:
        server.pause()
        server.kill()
        assert not server.running
        assert not server.paused
        with pytest.raises(RuntimeError, match="redis: the Redis server is not running"):
            server.kill()


def test_stop_while_paused(tmp_path: Path) -> None:
    """A paused server is stopped all the same, and at once; stopping again does nothing."""
    server = RedisServerProcess(tmp_path).start()
    process = server.process
    assert process is not None
    server.pause()
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5
    assert process.poll() is not None
    assert not server.paused
    server.stop()
    assert not server.answers()
    with pytest.raises(RuntimeError, match="redis: the Redis server is not running"):
        server.pause()
    with pytest.raises(RuntimeError, match="not running"):
        server.resume()


def test_never_started(tmp_path: Path) -> None:
    """A server never started cannot be talked to, signalled or restarted."""
    server = RedisServerProcess(tmp_path)
    assert repr(server) == "<RedisServerProcess redis at not started>"
    with pytest.raises(RuntimeError, match="redis: the Redis server was never started"):
        server.command("PING")
    with pytest.raises(RuntimeError, match="redis: the Redis server was never started"):
        server.restart()
    with pytest.raises(RuntimeError, match="not running"):
        server.kill()
    server.stop()


def test_missing_binary(tmp_path: Path) -> None:
    """Without redis-server the error says what to install."""
    server = RedisServerProcess(tmp_path, binary=str(tmp_path / "no-redis-server"))
    with pytest.raises(RuntimeError) as caught:
        server.start()
    assert str(caught.value) == (
        f"redis: {tmp_path / 'no-redis-server'} is not installed (apt-get install redis-server)"
    )
    assert server.process is None


def test_missing_from_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """By default redis-server is looked up in C{PATH}; not found there, the same hint."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"redis-server is not installed \(apt-get install"):
        RedisServerProcess(tmp_path).start()


class _BadOption(RedisServerProcess):
    """A real redis-server given an option it does not know."""

    def command_line(self, binary: str) -> list[str]:
        return [*super().command_line(binary), "--no-such-option", "1"]


class _Silent(RedisServerProcess):
    """A server whose process runs but never listens."""

    def command_line(self, binary: str) -> list[str]:
        script = "import time; print('thinking about it', flush=True); time.sleep(60)"
        return [sys.executable, "-c", script]


def test_start_that_exits(tmp_path: Path) -> None:
    """A server that exits while starting is an error naming its exit code and output."""
    with pytest.raises(RuntimeError) as caught:
        _BadOption(tmp_path, name="exits").start()
    message = str(caught.value)
    assert "exits: the Redis server exited with 1" in message
    assert "no-such-option" in message


def test_start_that_never_answers(tmp_path: Path) -> None:
    """A server that does not answer in time is stopped, and the error shows its output."""
    server = _Silent(tmp_path, name="silent")
    with pytest.raises(RuntimeError) as caught:
        server.start(timeout=1.0)
    message = str(caught.value)
    assert "silent: the Redis server did not answer within 1.0s" in message
    assert "thinking about it" in message
    assert server.process is not None
    assert server.process.poll() is not None
