"""
The C{htpasswd} access controller: the file (bcrypt only, what is refused
and how it is said, creation when missing, reloading), Basic credentials
and Distribution's 401, that unknown users cost a bcrypt check as wrong
passwords do, and that a flood of bad logins does not slow good ones (good
credentials cached, checks shared round-robin among clients).  Then real
processes: skopeo pushing and logging in, plain HTTP refused on every kind
of route (a streamed body stored nowhere), the same answers as Distribution
2.8's, and no password in the log.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http_headers import Headers
from zope.interface.verify import verifyObject

import txregistry.auth.htpasswd as htpasswd_module
from clients import Clients, ImageSet
from conftest import Registry, registry_config
from support import MISSING, assert_error, sha256, temporary_directory
from txregistry.auth.access import CATALOG, detail, repository_access
from txregistry.auth.fairness import CredentialCache, FairPool, ThreadRunner
from txregistry.auth.htpasswd import (
    CACHE_TTL,
    RELOAD_INTERVAL,
    HtpasswdAccessController,
    HtpasswdAccessControllerFactory,
    basic_credentials,
)
from txregistry.auth.htpasswd_file import DEFAULT_USER, bcrypt_verify, load_htpasswd, parse_htpasswd
from txregistry.auth.plugins import access_controller_factories
from txregistry.config import ConfigError
from txregistry.errors import RegistryError
from txregistry.interfaces import Access, AuthRequest, IAccessController, Identity
from txregistry.testing.client import HTTPResponse, request
from txregistry.testing.process import RegistryProcess

REALM = 'test "realm"'
CHALLENGE = 'Basic realm="test \\"realm\\""'
PULL = [repository_access("a/b", "pull")]


def hashed(password: str, cost: int = 4, prefix: bytes = b"2b") -> str:
    """A bcrypt hash of C{password} (cost 4: fast)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost, prefix)).decode()


def basic(user: str, password: str) -> bytes:
    """An C{Authorization: Basic} value."""
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def temporary_path(case: SynchronousTestCase) -> str:
    """A path in a new folder, removed after C{case}; nothing is there yet."""
    return os.path.join(temporary_directory(case, "txregistry-htpasswd-"), "htpasswd")


def rejected(data: bytes) -> ConfigError:
    """The error parsing C{data} as the file C{/etc/htpasswd} raises."""
    try:
        parse_htpasswd(data, "/etc/htpasswd")
    except ConfigError as error:
        assert error.key == "auth.htpasswd.path"
        return error
    raise AssertionError(f"accepted {data!r}")


# -- the file ---------------------------------------------------------------------------


class ParseTests(SynchronousTestCase):
    """What an htpasswd file may say, and how a wrong one is refused."""

    def test_bcrypt_variants(self) -> None:
        """C{$2a$}, C{$2b$} and C{$2y$} (Apache's) are all bcrypt."""
        lines = {
            "ann": hashed("a", prefix=b"2a"),
            "bob": hashed("b"),
            "cy": hashed("c").replace("$2b$", "$2y$"),
        }
        data = "".join(f"{user}:{value}\n" for user, value in lines.items()).encode()
        users = parse_htpasswd(data, "/x")
        self.assertEqual(users, {user: value.encode() for user, value in lines.items()})

    def test_comments_blank_lines_whitespace(self) -> None:
        """As Distribution: lines trimmed, blank and C{#} lines skipped, the last line wins."""
        first, second = hashed("one"), hashed("two")
        data = f"# users\n\n   \n  ann:{first}  \r\n#bob:nothing-to-see\nann:{second}\n".encode()
        self.assertEqual(parse_htpasswd(data, "/x"), {"ann": second.encode()})
        self.assertEqual(parse_htpasswd(b"", "/x"), {})

    def test_other_hashes_refused(self) -> None:
        """
        Every hash but bcrypt stops loading, naming the path, line and user,
        and the kind of hash, never the hash (nor a password in clear).
        """
        for value, kind in [
            ("$apr1$9Cv/OMGj$ZomWQzuQbL.3TRCS81A1g/", "an MD5 ($apr1$) hash"),
            ("{SHA}5siv5c0SHx681xU6GiSx9ZQryqs=", "a SHA-1 ({SHA}) hash"),
            ("abJnggxhB/yWI", "a crypt (DES) hash"),
            ("$1$saltsalt$qjXMvbEw8oaL.CzflDugX/", "an MD5-crypt ($1$) hash"),
            ("$5$salt$Gcm6FsVtF/Qa77ZKD.iwsJlCVPY0XSMgLJL0Hnww/c1", "a SHA-256-crypt ($5$) hash"),
            (
                "$6$salt$IxDD3jeSOb5eB1CX5LBsqZFVkJdido3OUILO5Ifz5iwMuTS4XMS130MTSuDDl3aCI6WouIL9A",
                "a SHA-512-crypt ($6$) hash",
            ),
            ("$2y$05$tooShort", "a malformed or old bcrypt hash"),
            ("$2x$05$" + "a" * 53, "a malformed or old bcrypt hash"),
            ("$2y$99$" + "a" * 53, "a malformed or old bcrypt hash"),
            ("plain-secret-password", "no known hash (plain text?)"),
            ("", "no hash"),
        ]:
            data = f"# header\nann:{hashed('a')}\nbob:{value}\n".encode()
            error = rejected(data)
            self.assertIn("/etc/htpasswd, line 3: user 'bob' has " + kind, error.problem)
            self.assertIn("only bcrypt ($2a$, $2b$, $2y$) is accepted", error.problem)
            if value:
                self.assertNotIn(value, str(error))

    def test_malformed_lines(self) -> None:
        """A line with no colon, no user or bytes that are not UTF-8: named, not shown."""
        for line, problem in [
            (b"a-password-typed-here", "line 2: not user:hash"),
            (b":" + hashed("x").encode(), "line 2: no user name before the colon"),
            (b"b\xffb:" + hashed("x").encode(), "line 2: not UTF-8"),
        ]:
            error = rejected(b"ann:" + hashed("a").encode() + b"\n" + line + b"\n")
            self.assertEqual(error.problem, f"/etc/htpasswd, {problem}")
        self.assertNotIn("a-password-typed-here", str(rejected(b"a-password-typed-here")))

    def test_unreadable(self) -> None:
        """A folder, or no file at all, cannot be read."""
        folder = temporary_path(self)
        os.mkdir(folder)
        with self.assertRaises(ConfigError) as raised:
            load_htpasswd(folder)
        self.assertEqual(raised.exception.key, "auth.htpasswd.path")
        self.assertEqual(raised.exception.problem, f"cannot read {folder}: Is a directory")

    def test_dummy_hash_has_the_usual_cost(self) -> None:
        """Unknown users are checked against a hash of the cost most users have."""
        path = temporary_path(self)
        lines = [f"u{n}:{hashed('x', cost)}" for n, cost in enumerate([4, 5, 5])]
        Path(path).write_text("\n".join(lines))
        loaded = load_htpasswd(path)
        self.assertEqual(loaded.dummy[:7], b"$2b$05$")
        self.assertFalse(bcrypt_verify(b"x", loaded.dummy))
        self.assertNotIn(loaded.dummy, loaded.users.values())


class VerifyTests(SynchronousTestCase):
    def test_bcrypt(self) -> None:
        """The real check, for each variant; passwords past 72 bytes count up to there, as Go's."""
        for prefix in (b"2a", b"2b"):
            value = hashed("right", prefix=prefix).encode()
            self.assertTrue(bcrypt_verify(b"right", value))
            self.assertFalse(bcrypt_verify(b"wrong", value))
        self.assertTrue(bcrypt_verify(b"right", hashed("right").replace("$2b$", "$2y$").encode()))
        long = b"x" * 72
        self.assertTrue(bcrypt_verify(long + b"ignored", hashed(long.decode()).encode()))


class BasicCredentialsTests(SynchronousTestCase):
    def parse(self, *values: bytes) -> Any:
        return basic_credentials(Headers({b"Authorization": list(values)}))

    def test_credentials(self) -> None:
        """User and password; the scheme's case does not matter; the password may hold colons."""
        self.assertEqual(self.parse(basic("ann", "a:b")), ("ann", b"a:b"))
        self.assertEqual(self.parse(b"basic " + base64.b64encode(b"ann:")), ("ann", b""))
        self.assertEqual(self.parse(basic("Zoë", "pässword")), ("Zoë", "pässword".encode()))
        self.assertEqual(self.parse(b"Basic " + base64.b64encode(b"u:\xff")), ("u", b"\xff"))

    def test_malformed(self) -> None:
        """Anything else is no credentials at all."""
        self.assertIsNone(basic_credentials(Headers()))
        for value in [
            b"Basic %%%",
            b"Basic " + base64.b64encode(b"no-colon"),
            b"Basic " + base64.b64encode(b"\xffuser:password"),
            b"Basic " + base64.b64encode(b"ann:pw")[:-2],
            b"Basic",
            b"Bearer " + base64.b64encode(b"ann:pw"),
            b"",
        ]:
            self.assertIsNone(self.parse(value), value)


# -- the controller, in memory ----------------------------------------------------------


class Hasher:
    """bcrypt, counting each check and the hash it was against."""

    def __init__(self) -> None:
        self.checked: list[bytes] = []
        self.lock = threading.Lock()

    def __call__(self, password: bytes, value: bytes) -> bool:
        with self.lock:
            self.checked.append(value)
        return bcrypt_verify(password, value)


class ManualRunner:
    """Runs each call only when the test says: a verifier as slow as the test wants."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Callable[[], Any], Deferred[Any]]] = []
        self.ran = 0

    def __call__(self, call: Callable[[], Any]) -> Deferred[Any]:
        result: Deferred[Any] = Deferred()
        self.waiting.append((call, result))
        return result

    def finish(self) -> None:
        """Run the oldest waiting call and fire its Deferred."""
        call, result = self.waiting.pop(0)
        self.ran += 1
        result.callback(call())


def run_now(call: Callable[[], Any]) -> Deferred[Any]:
    return maybeDeferred(call)


class ControllerTestCase(SynchronousTestCase):
    """An htpasswd file of two users and a controller over it, on a fake clock."""

    users = {"ann": "ann's password", "bob": "bob's password"}

    def setUp(self) -> None:
        self.path = temporary_path(self)
        self.writes = 0
        self.write(self.users)
        self.clock = Clock()
        self.hasher = Hasher()
        self.runner = ManualRunner()
        self.looks = 0
        self.events: list[dict[str, Any]] = []
        self.patch(htpasswd_module, "_log", Logger(observer=self.events.append))
        self.controller = self.make_controller()

    def make_controller(self, slots: int = 1, per_peer: int = 100) -> HtpasswdAccessController:
        def look(call: Callable[[], Any]) -> Deferred[Any]:
            self.looks += 1
            return maybeDeferred(call)

        self.pool = FairPool(slots, per_peer, self.runner)
        return HtpasswdAccessController(
            REALM,
            self.path,
            verify=self.hasher,
            pool=self.pool,
            clock=self.clock,
            run_blocking=look,
        )

    def write(self, users: dict[str, str], extra: str = "") -> None:
        """Write the file, with a modification time of its own."""
        text = "".join(f"{user}:{hashed(password)}\n" for user, password in users.items())
        Path(self.path).write_text(text + extra)
        self.writes += 1
        moment = time.time_ns() + self.writes * 1_000_000_000
        os.utime(self.path, ns=(moment, moment))

    def ask(
        self,
        authorization: bytes | None,
        peer: str = "10.0.0.1",
        access: list[Access] | None = None,
    ) -> Deferred[Identity]:
        headers = Headers({b"Authorization": [authorization]} if authorization else {})
        request = AuthRequest("GET", "/v2/a/b/tags/list", headers, peer)
        return self.controller.authorized(request, PULL if access is None else access)

    def let_in(self, user: str, password: str, peer: str = "10.0.0.1") -> Identity:
        """Ask with C{user}'s credentials, run the check; who it let in."""
        result = self.ask(basic(user, password), peer)
        while self.runner.waiting:
            self.runner.finish()
        identity: Identity = self.successResultOf(result)
        return identity

    def refused(self, result: Deferred[Identity], status: int = 401) -> RegistryError:
        """The error C{result} fails with once every check has run (none, for a 429)."""
        while self.runner.waiting and status != 429:
            self.runner.finish()
        error = self.failureResultOf(result, RegistryError).value
        assert isinstance(error, RegistryError)
        self.assertEqual(error.status, status)
        return error

    def messages(self, level: LogLevel | None = None) -> list[str]:
        return [
            formatEvent(event)
            for event in self.events
            if level is None or event["log_level"] == level
        ]


class ControllerTests(ControllerTestCase):
    def test_interface(self) -> None:
        verifyObject(IAccessController, self.controller)

    def test_right_password(self) -> None:
        """The user is let in, for anything: htpasswd has no per-repository rules."""
        self.assertEqual(self.let_in("ann", "ann's password"), Identity("ann"))
        for access in ([], [CATALOG], [repository_access("x/y", "delete")]):
            result = self.ask(basic("bob", "bob's password"), access=access)
            while self.runner.waiting:
                self.runner.finish()
            self.assertEqual(self.successResultOf(result), Identity("bob"))

    def test_wrong_password(self) -> None:
        """401 UNAUTHORIZED with the Basic challenge and the access asked for, as Distribution."""
        error = self.refused(self.ask(basic("ann", "bob's password")))
        self.assertEqual(error.error_code.code, "UNAUTHORIZED")
        self.assertEqual(error.headers, {"WWW-Authenticate": CHALLENGE})
        self.assertEqual(error.detail, detail(PULL))
        self.assertEqual(len(self.hasher.checked), 1)
        [line] = self.messages()
        self.assertEqual(line, "htpasswd: authentication failed for user 'ann' from 10.0.0.1")

    def test_unknown_user(self) -> None:
        """The same 401, after the same bcrypt check (against the dummy hash)."""
        error = self.refused(self.ask(basic("carol", "ann's password")))
        self.assertEqual(error.headers, {"WWW-Authenticate": CHALLENGE})
        self.assertEqual(error.error_code.code, "UNAUTHORIZED")
        self.assertEqual(len(self.hasher.checked), 1)

    def test_no_or_malformed_credentials(self) -> None:
        """The same 401, without any bcrypt check."""
        for authorization in [
            None,
            b"Basic !!!",
            b"Basic " + base64.b64encode(b"ann"),
            b"Basic " + base64.b64encode(b"\xfe:x"),
            b"Bearer token",
        ]:
            error = self.refused(self.ask(authorization, access=[CATALOG]))
            self.assertEqual(error.headers, {"WWW-Authenticate": CHALLENGE})
            self.assertEqual(error.detail, detail([CATALOG]))
        self.assertEqual(self.hasher.checked, [])

    def test_unknown_user_costs_a_wrong_password(self) -> None:
        """
        An unknown user and a wrong password each cost one check, against
        hashes of the same kind and cost, so timing does not tell which
        users exist.
        """
        self.refused(self.ask(basic("ann", "wrong")))
        self.refused(self.ask(basic("nobody", "wrong")))
        self.refused(self.ask(basic("", "")))
        known, unknown, empty = self.hasher.checked
        self.assertEqual(unknown[:7], known[:7])
        self.assertEqual(unknown, empty)
        self.assertNotEqual(unknown, known)


class CacheTests(ControllerTestCase):
    """Good credentials are checked once; bad ones every time."""

    def test_good_credentials_skip_bcrypt(self) -> None:
        for _ in range(5):
            self.assertEqual(self.let_in("ann", "ann's password"), Identity("ann"))
        self.assertEqual(len(self.hasher.checked), 1)
        self.refused(self.ask(basic("ann", "another")))
        self.refused(self.ask(basic("ann", "another")))
        self.assertEqual(len(self.hasher.checked), 3)

    def test_ttl(self) -> None:
        """Remembered for a few minutes, then checked again."""
        self.let_in("ann", "ann's password")
        self.clock.advance(CACHE_TTL - 1)
        self.let_in("ann", "ann's password")
        self.assertEqual(len(self.hasher.checked), 1)
        self.clock.advance(2)
        self.let_in("ann", "ann's password")
        self.assertEqual(len(self.hasher.checked), 2)

    def test_same_credentials_at_once_checked_once(self) -> None:
        """Requests with credentials being checked wait for that check."""
        results = [self.ask(basic("ann", "ann's password"), f"10.0.0.{n}") for n in range(3)]
        wrong = [self.ask(basic("ann", "wrong")) for _ in range(2)]
        self.assertEqual(len(self.runner.waiting), 1)
        self.assertEqual([self.pool.pending(f"10.0.0.{n}") for n in range(3)], [1, 1, 0])
        while self.runner.waiting:
            self.runner.finish()
        for result in results:
            self.assertEqual(self.successResultOf(result), Identity("ann"))
        for refused in wrong:
            self.refused(refused)
        self.assertEqual(len(self.hasher.checked), 2)

    def test_reload_forgets(self) -> None:
        """A changed file forgets what was remembered: a changed password counts at once."""
        self.let_in("ann", "ann's password")
        self.write({"ann": "new password"})
        self.clock.advance(RELOAD_INTERVAL)
        self.refused(self.ask(basic("ann", "ann's password")))
        self.assertEqual(self.let_in("ann", "new password"), Identity("ann"))

    def test_check_across_a_reload_not_remembered(self) -> None:
        """A check begun on the old file is answered, but not remembered after a reload."""
        result = self.ask(basic("ann", "ann's password"))
        self.write({"ann": "new password"})
        self.clock.advance(RELOAD_INTERVAL)
        removed = self.ask(basic("bob", "bob's password"))
        self.runner.finish()
        self.assertEqual(self.successResultOf(result), Identity("ann"))
        self.refused(removed)
        self.refused(self.ask(basic("ann", "ann's password")))
        self.assertEqual(len(self.hasher.checked), 3)

    def test_bounded_and_keyed(self) -> None:
        """The least recently used go first; keys are keyed hashes, not passwords."""
        cache = CredentialCache(self.clock, size=2, ttl=60)
        keys = [cache.key("ann", password) for password in (b"1", b"2", b"3")]
        cache.add(keys[0])
        cache.add(keys[1])
        self.assertIn(keys[0], cache)
        cache.add(keys[2])
        self.assertEqual([key in cache for key in keys], [True, False, True])
        self.assertNotEqual(CredentialCache(self.clock, 2, 60).key("ann", b"1"), keys[0])
        self.assertNotEqual(cache.key("an", b"n1"), keys[0])
        self.assertNotIn(b"1", keys[0][-1:] + keys[0][:1])


class FloodTests(ControllerTestCase):
    """One client's flood of bad logins does not hold up another's good one."""

    def test_round_robin(self) -> None:
        """With one slot, B's check runs right after the one A has running."""
        pool = FairPool(1, 100, self.runner)
        order: list[str] = []
        for n in range(5):
            pool.submit("A", lambda n=n: order.append(f"A{n}"))
        pool.submit("B", lambda: order.append("B0"))
        pool.submit("C", lambda: order.append("C0"))
        pool.submit("B", lambda: order.append("B1"))
        while self.runner.waiting:
            self.runner.finish()
        self.assertEqual(order, ["A0", "B0", "C0", "A1", "B1", "A2", "A3", "A4"])

    def test_flood_does_not_delay_another_peer(self) -> None:
        """
        Fifty wrong passwords queued from A; B's good login is checked as
        soon as the one slot frees, ahead of A's other 49.
        """
        flood = [self.ask(basic("ann", f"guess {n}"), "10.0.0.66") for n in range(50)]
        good = self.ask(basic("bob", "bob's password"), "10.0.0.2")
        self.assertNoResult(good)
        self.runner.finish()
        self.runner.finish()
        self.assertEqual(self.successResultOf(good), Identity("bob"))
        self.assertEqual(self.runner.ran, 2)
        self.assertEqual(self.pool.pending("10.0.0.66"), 49)
        while self.runner.waiting:
            self.runner.finish()
        for result in flood:
            self.refused(result)

    def test_overflowing_peer_refused_at_once(self) -> None:
        """
        Past its bound, a client's checks fail at once with 429
        TOOMANYREQUESTS (logged once), while other clients are still
        served; once its checks are done it may try again.
        """
        self.controller = self.make_controller(per_peer=3)
        queued = [self.ask(basic("ann", f"guess {n}"), "10.0.0.66") for n in range(3)]
        for n in range(3):
            error = self.refused(self.ask(basic("ann", f"more {n}"), "10.0.0.66"), status=429)
            self.assertEqual(error.error_code.code, "TOOMANYREQUESTS")
            self.assertEqual(error.headers, {"Retry-After": "1"})
        for result in queued:
            self.refused(result)
        self.assertEqual(len(self.hasher.checked), 3)
        self.assertEqual(self.let_in("bob", "bob's password", "10.0.0.2"), Identity("bob"))
        self.assertEqual(self.let_in("ann", "ann's password", "10.0.0.66"), Identity("ann"))
        refusals = [line for line in self.messages(LogLevel.warn) if "429" in line]
        self.assertEqual(
            refusals, ["htpasswd: too many logins at once from 10.0.0.66; refusing more with 429"]
        )

    def test_cached_login_during_flood(self) -> None:
        """A client logged in before does not queue at all."""
        self.let_in("bob", "bob's password", "10.0.0.2")
        flood = [self.ask(basic("ann", f"guess {n}"), "10.0.0.66") for n in range(20)]
        self.assertEqual(
            self.successResultOf(self.ask(basic("bob", "bob's password"), "10.0.0.2")),
            Identity("bob"),
        )
        while self.runner.waiting:
            self.runner.finish()
        for result in flood:
            self.refused(result)


class ThreadedFloodTests(TestCase):
    """The same, with real threads and a slow verifier."""

    async def test_flood_with_threads(self) -> None:
        finished: list[str] = []
        lock = threading.Lock()

        def slow(name: str) -> str:
            time.sleep(0.02)
            with lock:
                finished.append(name)
            return name

        pool = FairPool(1, 20, ThreadRunner(1, "test-flood"))
        flood = [pool.submit("A", lambda n=n: slow(f"A{n}")) for n in range(10)]
        good = pool.submit("B", lambda: slow("B"))
        self.assertEqual(await good, "B")
        for result in flood:
            await result
        self.assertEqual(finished.index("B"), 1)


class ReloadTests(ControllerTestCase):
    """Users are added without a restart; a bad file keeps the users read before."""

    def test_new_user(self) -> None:
        self.write({**self.users, "carol": "carol's password"})
        self.refused(self.ask(basic("carol", "carol's password")))
        self.assertEqual(self.looks, 0)
        self.clock.advance(RELOAD_INTERVAL)
        self.assertEqual(self.let_in("carol", "carol's password"), Identity("carol"))
        self.assertEqual(self.looks, 1)
        self.assertEqual(self.controller.users, ["ann", "bob", "carol"])
        self.assertIn(f"htpasswd: reloaded {self.path}: 3 users", self.messages(LogLevel.info))

    def test_looks_at_most_once_a_second(self) -> None:
        for _ in range(3):
            self.clock.advance(RELOAD_INTERVAL / 4)
            for _ in range(5):
                self.refused(self.ask(None, access=[]))
                self.let_in("ann", "ann's password")
        self.assertEqual(self.looks, 0)
        self.clock.advance(RELOAD_INTERVAL)
        self.let_in("ann", "ann's password")
        self.let_in("ann", "ann's password")
        self.assertEqual(self.looks, 1)

    def test_broken_file_keeps_users(self) -> None:
        """A reload that fails keeps the old users, says why once, and a fix is read."""
        self.write(self.users, extra="carol:{SHA}5siv5c0SHx681xU6GiSx9ZQryqs=\n")
        for _ in range(3):
            self.clock.advance(RELOAD_INTERVAL)
            self.assertEqual(self.let_in("ann", "ann's password"), Identity("ann"))
        self.assertEqual(self.looks, 3)
        [warning] = self.messages(LogLevel.warn)
        self.assertEqual(
            warning,
            "htpasswd: not reloaded, keeping the 2 users read before: "
            f"{self.path}, line 3: user 'carol' has a SHA-1 ({{SHA}}) hash; "
            "only bcrypt ($2a$, $2b$, $2y$) is accepted (htpasswd -B makes it)",
        )
        self.assertNotIn("5siv5c0SHx681xU6GiSx9ZQryqs", warning)
        self.write({"carol": "carol's password"})
        self.clock.advance(RELOAD_INTERVAL)
        self.assertEqual(self.let_in("carol", "carol's password"), Identity("carol"))
        self.refused(self.ask(basic("ann", "ann's password")))

    def test_removed_file_keeps_users(self) -> None:
        os.remove(self.path)
        self.clock.advance(RELOAD_INTERVAL)
        self.assertEqual(self.let_in("bob", "bob's password"), Identity("bob"))
        [warning] = self.messages(LogLevel.warn)
        self.assertIn(f"cannot read {self.path}: No such file or directory", warning)


# -- the factory and a missing file -----------------------------------------------------


class FactoryTests(TestCase):
    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.patch(htpasswd_module, "_log", Logger(observer=self.events.append))

    def test_found_as_plugin(self) -> None:
        self.assertIn("htpasswd", access_controller_factories())

    def test_options(self) -> None:
        """realm and path are required strings; nothing else is known."""
        factory = HtpasswdAccessControllerFactory()
        path = temporary_path(self)
        for options, key in [
            ({"path": path}, "auth.htpasswd.realm"),
            ({"realm": "r"}, "auth.htpasswd.path"),
            ({"realm": "r", "path": ""}, "auth.htpasswd.path"),
            ({"realm": "r", "path": 3}, "auth.htpasswd.path"),
            ({"realm": "r", "path": path, "users": []}, "auth.htpasswd.users"),
        ]:
            with self.assertRaises(ConfigError) as raised:
                factory.create(options)
            self.assertEqual(raised.exception.key, key, options)

    def test_existing_file_used_as_is(self) -> None:
        path = temporary_path(self)
        Path(path).write_text(f"ann:{hashed('pw')}\n")
        before = Path(path).read_bytes()
        controller = HtpasswdAccessControllerFactory().create({"realm": "r", "path": path})
        assert isinstance(controller, HtpasswdAccessController)
        self.assertEqual(controller.users, ["ann"])
        self.assertEqual(Path(path).read_bytes(), before)
        self.assertEqual(self.events, [])

    async def test_missing_file_created(self) -> None:
        """
        As Distribution: the folder (0700) and file (0600) are made, with
        one user and a generated password, bcrypt-hashed, logged once.
        """
        folder = Path(temporary_path(self)) / "auth" / "deeper"
        path = folder / "htpasswd"
        controller = HtpasswdAccessControllerFactory().create({"realm": "r", "path": str(path)})
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(folder.stat().st_mode), 0o700)
        [line] = path.read_text().splitlines()
        user, value = line.split(":", 1)
        self.assertEqual(user, DEFAULT_USER)
        self.assertTrue(value.startswith("$2b$10$"), value)
        [event] = self.events
        self.assertEqual(event["log_level"], LogLevel.warn)
        message = formatEvent(event)
        found = re.fullmatch(
            rf"htpasswd: {re.escape(str(path))} was missing; created it with user 'admin' and "
            r"the generated password (\S+) \(shown only this once\)",
            message,
        )
        assert found is not None, message
        password = found.group(1)
        self.assertGreaterEqual(len(password), 40)
        headers = Headers({b"Authorization": [basic(DEFAULT_USER, password)]})
        identity = await controller.authorized(AuthRequest("GET", "/v2/", headers, "peer"), [])
        self.assertEqual(identity, Identity(DEFAULT_USER))
        with self.assertRaises(RegistryError):
            headers = Headers({b"Authorization": [basic(DEFAULT_USER, password + "x")]})
            await controller.authorized(AuthRequest("GET", "/v2/", headers, "peer"), [])
        # Made once: a second start finds it and says nothing.
        HtpasswdAccessControllerFactory().create({"realm": "r", "path": str(path)})
        warnings = [event for event in self.events if event["log_level"] == LogLevel.warn]
        self.assertEqual(warnings, [event])

    def test_bad_file_stops_creation(self) -> None:
        path = temporary_path(self)
        Path(path).write_text("ann:$apr1$9Cv/OMGj$ZomWQzuQbL.3TRCS81A1g/\n")
        with self.assertRaises(ConfigError) as raised:
            HtpasswdAccessControllerFactory().create({"realm": "r", "path": path})
        self.assertEqual(
            str(raised.exception),
            f"auth.htpasswd.path: {path}, line 1: user 'ann' has an MD5 ($apr1$) hash; "
            "only bcrypt ($2a$, $2b$, $2y$) is accepted (htpasswd -B makes it)",
        )


# -- real processes ---------------------------------------------------------------------

PASSWORDS = {"alice": "alice-Secret-7f3a9", "bob": "bob-Secret-c41d2"}
WRONG = "wrong-Secret-90e1b"
RESERVED_REALM = "txregistry htpasswd tests"


def credentials(user: str, password: str) -> dict[str, str]:
    return {"Authorization": basic(user, password).decode()}


ALICE = credentials("alice", PASSWORDS["alice"])


def write_htpasswd(path: Path) -> None:
    path.write_text(
        "# the test users\n"
        + "".join(f"{user}:{hashed(password, 5)}\n" for user, password in PASSWORDS.items())
    )


def auth_section(path: Path) -> dict[str, Any]:
    return {"htpasswd": {"realm": RESERVED_REALM, "path": str(path)}}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """
    A registry behind htpasswd for the module; at teardown, its log must
    hold no traceback and none of the passwords the tests sent.
    """
    workdir = tmp_path_factory.mktemp("htpasswd-registry")
    write_htpasswd(workdir / "htpasswd")
    config = registry_config(workdir / "root")
    config["auth"] = auth_section(workdir / "htpasswd")
    process = RegistryProcess(workdir, config, name="htpasswd")
    process.start()
    server = Registry(process, workdir / "root")
    try:
        yield server
    finally:
        process.stop()
    problems = server.log_problems()
    assert not problems, "the registry logged:\n" + "\n".join(problems)
    assert_no_secret_logged(server)


def assert_no_secret_logged(server: Registry) -> None:
    log = server.process.log_path.read_text(errors="replace")
    assert "authentication failed for user" in log  # the log is the one the tests wrote to
    for secret in [*PASSWORDS.values(), WRONG]:
        assert secret not in log
        for user in PASSWORDS:
            assert base64.b64encode(f"{user}:{secret}".encode()).decode() not in log


def refused(response: HTTPResponse, access: list[Access]) -> None:
    """Distribution's 401: the Basic challenge, UNAUTHORIZED naming the access asked for."""
    assert response.header("WWW-Authenticate") == f'Basic realm="{RESERVED_REALM}"'
    assert_error(response, 401, "UNAUTHORIZED")
    assert response.json()["errors"][0]["detail"] == detail(access)


def test_base_and_catalog(secured: Registry) -> None:
    """C{GET /v2/} and the catalog: 401 without, or with wrong, credentials; 200 with good ones."""
    for headers in [{}, credentials("alice", WRONG), credentials("mallory", WRONG)]:
        refused(secured.request("GET", "", headers=headers), [])
        refused(secured.request("GET", "_catalog", headers=headers), [CATALOG])
    response = secured.request("GET", "", headers=ALICE)
    assert (response.status, response.json()) == (200, {})
    assert secured.request("GET", "_catalog", headers=ALICE).status == 200
    for value in ["Basic %%%", "Basic " + base64.b64encode(b"alice").decode(), "Bearer x"]:
        refused(secured.request("GET", "", headers={"Authorization": value}), [])


def test_pull_and_push_refused(secured: Registry, repo: str) -> None:
    """Reads need pull, writes pull and push; no blob is stored by a refused POST."""
    pull = [repository_access(repo, "pull")]
    push = [*pull, repository_access(repo, "push")]
    data = b"refused layer"
    for headers in [{}, credentials("alice", WRONG), credentials("nobody", PASSWORDS["alice"])]:
        refused(secured.request("GET", f"{repo}/manifests/latest", headers=headers), pull)
        refused(secured.request("GET", f"{repo}/blobs/{MISSING}", headers=headers), pull)
        refused(secured.request("GET", f"{repo}/tags/list", headers=headers), pull)
        refused(secured.request("POST", f"{repo}/blobs/uploads/", headers=headers), push)
        response = secured.request(
            "POST", f"{repo}/blobs/uploads/?digest={sha256(data)}", data, headers
        )
        refused(response, push)
        head = secured.request("HEAD", f"{repo}/manifests/latest", headers=headers)
        assert head.status == 401
        assert head.header("WWW-Authenticate") == f'Basic realm="{RESERVED_REALM}"'
    assert not secured.blob_file(sha256(data)).exists()
    assert secured.uploads_dir(repo).exists() is False


def test_streamed_patch_not_stored(secured: Registry, repo: str) -> None:
    """A chunked PATCH with wrong credentials is refused before its body reaches storage."""
    location = secured.request("POST", f"{repo}/blobs/uploads/", headers=ALICE).header("Location")
    assert location is not None
    [upload] = secured.upload_entries(repo)
    data = os.urandom(1_000_000)
    for headers in [{}, credentials("alice", WRONG)]:
        response = request("PATCH", secured.resolve(location), iter([data]), headers)
        refused(response, [repository_access(repo, "pull"), repository_access(repo, "push")])
    stored = [p for p in (secured.uploads_dir(repo) / upload).rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in stored if p.name == "data") == 0, stored
    status = secured.request("GET", location, headers=ALICE)
    assert (status.status, status.header("Range")) == (204, "0-0")
    response = request("PATCH", secured.resolve(location), iter([data]), ALICE)
    assert response.status == 202, response.body
    assert response.header("Range") == f"0-{len(data) - 1}"


@pytest.fixture(scope="module")
def own_clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clients]:
    """skopeo's configuration, auth file and state in a temporary folder of this module."""
    folder = Clients(tmp_path_factory.mktemp("htpasswd-clients"))
    try:
        yield folder
    finally:
        folder.close()


def host(server: Registry) -> str:
    return server.url.removeprefix("http://")


def skopeo_copy(
    clients: Clients, images: ImageSet, server: Registry, destination: str, *extra: str
) -> Any:
    return clients.run(
        "skopeo",
        [
            "copy",
            "--dest-tls-verify=false",
            *extra,
            f"oci:{images.layout.path}:single",
            f"docker://{host(server)}/{destination}",
        ],
        check=False,
    )


def test_skopeo_copy(secured: Registry, own_clients: Clients, images: ImageSet, repo: str) -> None:
    """C{--dest-creds} pushes; a wrong password, an unknown user or none are refused."""
    for extra in [
        ["--dest-creds", f"alice:{WRONG}"],
        ["--dest-creds", f"mallory:{PASSWORDS['alice']}"],
        [],
    ]:
        result = skopeo_copy(own_clients, images, secured, f"{repo}:v1", *extra)
        assert result.returncode != 0, result.stderr
        assert "authentication required" in result.stderr or "unauthorized" in result.stderr
    catalog = secured.request("GET", "_catalog", headers=ALICE).json()
    assert repo not in catalog["repositories"]
    result = skopeo_copy(
        own_clients, images, secured, f"{repo}:v1", "--dest-creds", f"bob:{PASSWORDS['bob']}"
    )
    assert result.returncode == 0, result.stderr
    response = secured.request(
        "GET",
        f"{repo}/manifests/v1",
        headers={**ALICE, "Accept": images.single.manifest.media_type},
    )
    assert response.status == 200
    assert response.header("Docker-Content-Digest") == images.single.digest


def test_skopeo_login(
    secured: Registry,
    own_clients: Clients,
    images: ImageSet,
    repo: str,
    tmp_path: Path,
) -> None:
    """
    C{skopeo login} with the right password writes the auth file (in a
    temporary folder), which a copy then uses; a wrong password fails.
    """
    authfile = tmp_path / "auth.json"
    login = ["login", "--tls-verify=false", "--authfile", str(authfile)]
    result = own_clients.run(
        "skopeo", [*login, "-u", "alice", "-p", WRONG, host(secured)], check=False
    )
    assert result.returncode != 0
    assert not authfile.exists() or host(secured) not in authfile.read_text()
    own_clients.run("skopeo", [*login, "-u", "alice", "-p", PASSWORDS["alice"], host(secured)])
    assert host(secured) in json.loads(authfile.read_text())["auths"]
    result = skopeo_copy(own_clients, images, secured, f"{repo}:v1", "--authfile", str(authfile))
    assert result.returncode == 0, result.stderr


def test_new_user_without_restart(secured: Registry) -> None:
    """A user added to the file can log in within a few seconds."""
    path = Path(str(secured.process.log_path)).parent / "htpasswd"
    carol = credentials("carol", PASSWORDS["bob"])
    refused(secured.request("GET", "", headers=carol), [])
    original = path.read_text()
    try:
        path.write_text(original + f"carol:{hashed(PASSWORDS['bob'], 5)}\n")
        deadline = time.monotonic() + 10
        while secured.request("GET", "", headers=carol).status != 200:
            assert time.monotonic() < deadline, "carol was never let in"
            time.sleep(0.2)
    finally:
        path.write_text(original)


def test_no_password_in_log(secured: Registry) -> None:
    """Neither good nor wrong passwords (nor Basic values) are ever logged."""
    secured.request("GET", "", headers=credentials("alice", WRONG))
    assert_no_secret_logged(secured)


def test_same_answers_as_distribution(secured: Registry, tmp_path: Path, repo: str) -> None:
    """
    Distribution 2.8 over the same htpasswd file answers the same statuses,
    challenges and error codes, and the same details where it names access.
    """
    htpasswd = Path(str(secured.process.log_path)).parent / "htpasswd"
    config = registry_config(tmp_path / "root")
    config["auth"] = auth_section(htpasswd)
    with RegistryProcess(tmp_path, config, reference=True) as reference:
        server = Registry(reference, tmp_path / "root")
        for method, target, headers in [
            ("GET", "", {}),
            ("GET", "", credentials("alice", WRONG)),
            ("GET", "", credentials("nobody", WRONG)),
            ("GET", "", {"Authorization": "Basic %%%"}),
            ("GET", "", ALICE),
            ("GET", "_catalog", {}),
            ("GET", f"{repo}/tags/list", credentials("bob", WRONG)),
            ("POST", f"{repo}/blobs/uploads/", {}),
            ("DELETE", f"{repo}/manifests/{MISSING}", credentials("bob", WRONG)),
        ]:
            ours = secured.request(method, target, headers=headers)
            theirs = request(method, server.resolve(target), headers=headers)
            assert ours.status == theirs.status, (method, target)
            for name in ("WWW-Authenticate", "Content-Type"):
                assert ours.header(name) == theirs.header(name), (method, target, name)
            if ours.status == 401:
                [error] = theirs.json()["errors"]
                assert ours.json()["errors"][0]["code"] == error["code"]
                assert ours.json()["errors"][0]["message"] == error["message"]
                if error["detail"] is not None:
                    assert ours.json()["errors"][0]["detail"] == error["detail"]


def test_missing_file_created_in_process(
    start_registry_with: Callable[..., Registry], tmp_path: Path
) -> None:
    """
    A registry started with no file makes one and logs the password once;
    C{admin} logs in with it.
    """
    path = tmp_path / "auth" / "htpasswd"
    server = start_registry_with({"auth": {"htpasswd": {"realm": "r", "path": str(path)}}})
    log = server.process.log_path.read_text()
    found = re.findall(r"created it with user 'admin' and the generated password (\S+)", log)
    assert len(found) == 1, log
    [password] = found
    assert log.count(password) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    response = server.request("GET", "", headers=credentials("admin", password))
    assert response.status == 200
    refused_response = server.request("GET", "", headers=credentials("admin", "nope"))
    assert refused_response.status == 401


def test_other_hash_stops_startup(
    start_registry_with: Callable[..., Registry], tmp_path: Path
) -> None:
    """An MD5 entry stops start-up with one line naming the line and user, not the hash."""
    path = tmp_path / "htpasswd"
    path.write_text(f"alice:{hashed('x')}\nbob:$apr1$9Cv/OMGj$ZomWQzuQbL.3TRCS81A1g/\n")
    with pytest.raises(RuntimeError) as raised:
        start_registry_with({"auth": auth_section(path)})
    message = str(raised.value)
    assert (
        f"auth.htpasswd.path: {path}, line 2: user 'bob' has an MD5 ($apr1$) hash; "
        "only bcrypt ($2a$, $2b$, $2y$) is accepted (htpasswd -B makes it)"
    ) in message
    assert "ZomWQzuQbL" not in message
    assert "Traceback" not in message
