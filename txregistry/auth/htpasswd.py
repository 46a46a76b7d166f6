# -*- test-case-name: tests.test_auth_htpasswd -*-
"""
Distribution's C{htpasswd} access controller (C{registry/auth/htpasswd}):
HTTP Basic credentials checked against an Apache htpasswd file of bcrypt
hashes.  Any user in the file may do anything; without credentials, or with
wrong ones, a request gets a 401 with C{WWW-Authenticate: Basic
realm="<realm>"} and an C{UNAUTHORIZED} error naming the access it asked
for.  Basic credentials travel in clear text: serve it behind TLS.

    auth:
      htpasswd:
        realm: basic-realm
        path: /etc/docker/registry/htpasswd

As in Distribution, a missing file is created (with its folder) holding one
user, L{DEFAULT_USER}, whose generated password is logged once, in a
warning; the file is read again when it changes (checked at most once a
second), so users can be added without a restart.  Unlike Distribution, a
hash other than bcrypt (MD5 C{$apr1$}, C{{SHA}}, crypt, plain text) stops
start-up, naming the line and the user, instead of failing each login.

Failed logins are expensive on purpose (bcrypt), so a flood of them must not
slow good ones down:
  - a good user and password, once checked, are remembered for
    L{CACHE_TTL} seconds (by an HMAC under a key of this process, never in
    clear), so clients that send Basic credentials with every request are
    checked once; a reload of the file forgets them all
    (L{txregistry.auth.fairness.CredentialCache});
  - the same credentials asked for again while being checked wait for that
    check rather than starting another;
  - checks run in a small pool of threads of their own, shared round-robin
    among client addresses (L{txregistry.auth.fairness}); an address with
    L{PER_PEER} checks already waiting or running is answered at once with
    429 C{TOOMANYREQUESTS} (Distribution's code for it) and C{Retry-After},
    not 401: the credentials were not judged, and a 401 would tell a client
    its password is wrong.
An unknown user costs a bcrypt check against a dummy hash of the file's
usual cost, as a wrong password does, so timing does not tell which users
exist.  Behind a reverse proxy every client has the proxy's address, and so
shares one queue.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txregistry.auth.challenges import quoted, unauthorized
from txregistry.auth.fairness import CredentialCache, FairPool, PeerQueueFull, ThreadRunner
from txregistry.auth.htpasswd_file import (
    DEFAULT_USER,
    PATH_KEY,
    Htpasswd,
    Signature,
    bcrypt_verify,
    create_htpasswd,
    file_signature,
    load_htpasswd,
)
from txregistry.config import ConfigError, check_parameters
from txregistry.errors import TOOMANYREQUESTS
from txregistry.interfaces import (
    Access,
    AuthRequest,
    IAccessController,
    IAccessControllerFactory,
    Identity,
)
from txregistry.threads import in_thread

_log = Logger()

# The shortest time between two looks at the file.
RELOAD_INTERVAL = 1.0
# Good credentials remembered: how many, and for how long (seconds).
CACHE_SIZE = 1024
CACHE_TTL = 300.0
# Threads checking passwords, and the checks one client may have waiting or
# running.  bcrypt releases the GIL, so threads beyond the CPUs only queue.
SLOTS = max(2, min(4, os.cpu_count() or 1))
PER_PEER = 8

# Password hashers: given a password and a stored hash, whether they match.
Verifier = Callable[[bytes, bytes], bool]


# -- credentials ------------------------------------------------------------------------


def basic_credentials(headers: Any) -> tuple[str, bytes] | None:
    """
    The user and password of an C{Authorization: Basic} header, as Go's
    C{Request.BasicAuth} reads it; L{None} when there is none, or it is
    not Basic, not base64, has no colon, or a user name that is not UTF-8.
    """
    values = headers.getRawHeaders(b"Authorization")
    if not values:
        return None
    scheme, _, encoded = values[0].partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


def _check(verify: Verifier, htpasswd: Htpasswd, user: str, password: bytes) -> bool:
    """In a thread: whether C{user} is in the file with C{password}."""
    hashed = htpasswd.users.get(user)
    # An unknown user costs what a wrong password does.
    matched = verify(password, htpasswd.dummy if hashed is None else hashed)
    return matched and hashed is not None


# -- the controller ---------------------------------------------------------------------


@implementer(IAccessController)
class HtpasswdAccessController:
    """
    Lets in the users of an htpasswd file, as the module docstring says.

    @param verify: the password hasher (tests pass a fake).
    @param pool: where checks run (default: L{SLOTS} threads of their own).
    @param clock: for the cache and the reload interval.
    @param run_blocking: runs the file's reads off the reactor thread.
    @raise ConfigError: when the file cannot be read or parsed.
    """

    def __init__(
        self,
        realm: str,
        path: str,
        *,
        verify: Verifier = bcrypt_verify,
        pool: FairPool | None = None,
        clock: IReactorTime | None = None,
        run_blocking: Callable[[Callable[[], Any]], Deferred[Any]] = in_thread,
    ) -> None:
        self.realm = realm
        self.path = path
        self._verify = verify
        self._pool = pool or FairPool(SLOTS, PER_PEER, ThreadRunner(SLOTS, "txregistry-bcrypt"))
        self._clock: IReactorTime = clock if clock is not None else IReactorTime(reactor)
        self._run_blocking = run_blocking
        self._htpasswd = load_htpasswd(path)
        # Bumped by each reload, so a check begun before it is not cached.
        self._generation = 0
        self._cache = CredentialCache(self._clock, CACHE_SIZE, CACHE_TTL)
        self._checks: dict[tuple[int, bytes], list[Deferred[bool]]] = {}
        self._next_look = self._clock.seconds() + RELOAD_INTERVAL
        self._looking: list[Deferred[None]] | None = None
        self._reload_problem: str | None = None
        self._refusing: set[str] = set()

    @property
    def users(self) -> list[str]:
        """The users of the file as last read, sorted."""
        return sorted(self._htpasswd.users)

    def authorized(self, request: AuthRequest, access: Sequence[Access]) -> Deferred[Identity]:
        """See L{IAccessController.authorized}."""
        return ensureDeferred(self._authorize(request, list(access)))

    async def _authorize(self, request: AuthRequest, access: list[Access]) -> Identity:
        credentials = basic_credentials(request.headers)
        if credentials is None:
            raise self._unauthorized(access)
        user, password = credentials
        await self._look_at_file()
        key = self._cache.key(user, password)
        if key in self._cache:
            return Identity(user)
        try:
            good = await self._checked(request.peer, key, user, password)
        except PeerQueueFull:
            if request.peer not in self._refusing:
                self._refusing.add(request.peer)
                _log.warn(
                    "htpasswd: too many logins at once from {peer}; refusing more with 429",
                    peer=request.peer,
                )
            raise TOOMANYREQUESTS(headers={"Retry-After": "1"}) from None
        if not good:
            _log.info(
                "htpasswd: authentication failed for user {user!r} from {peer}",
                user=user,
                peer=request.peer,
            )
            raise self._unauthorized(access)
        return Identity(user)

    def _unauthorized(self, access: list[Access]) -> Exception:
        """Distribution's answer to missing or wrong credentials."""
        return unauthorized(access, f"Basic realm={quoted(self.realm)}")

    # -- checking passwords ------------------------------------------------------------

    def _checked(self, peer: str, key: bytes, user: str, password: bytes) -> Deferred[bool]:
        """
        Whether C{user} has C{password}, checked in the pool for C{peer},
        or by the check of the same credentials already under way.

        @raise PeerQueueFull: when C{peer} may queue no more checks.
        """
        flight = (self._generation, key)
        waiter: Deferred[bool] = Deferred()
        waiters = self._checks.get(flight)
        if waiters is not None:
            waiters.append(waiter)
            return waiter
        self._checks[flight] = [waiter]
        check = partial(_check, self._verify, self._htpasswd, user, password)
        try:
            running = self._pool.submit(peer, check)
        except PeerQueueFull:
            del self._checks[flight]
            raise
        running.addBoth(self._check_done, flight, peer)
        return waiter

    def _check_done(self, outcome: bool | Failure, flight: tuple[int, bytes], peer: str) -> None:
        if outcome is True and flight[0] == self._generation:
            self._cache.add(flight[1])
        if not self._pool.pending(peer):
            self._refusing.discard(peer)
        for waiter in self._checks.pop(flight):
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)

    # -- reloading the file --------------------------------------------------------------

    def _look_at_file(self) -> Deferred[None]:
        """
        Reload the file if it changed, looking at most once every
        L{RELOAD_INTERVAL} seconds; fires when the look (if any) is done.
        """
        waiter: Deferred[None] = Deferred()
        if self._looking is not None:
            self._looking.append(waiter)
            return waiter
        if self._clock.seconds() < self._next_look:
            return succeed(None)
        self._next_look = self._clock.seconds() + RELOAD_INTERVAL
        self._looking = [waiter]
        self._run_blocking(partial(self._read_if_changed, self._htpasswd.signature)).addBoth(
            self._looked
        )
        return waiter

    def _read_if_changed(self, known: Signature) -> Htpasswd | str | None:
        """
        In a thread: the file, if it changed since C{known}; what is wrong
        with it, if it cannot be read; L{None} if it did not change.
        """
        try:
            if file_signature(os.stat(self.path)) == known:
                return None
            return load_htpasswd(self.path)
        except OSError as error:
            return f"cannot read {self.path}: {error.strerror}"
        except ConfigError as error:
            return error.problem

    def _looked(self, outcome: Htpasswd | str | Failure | None) -> None:
        if isinstance(outcome, Failure):
            _log.failure("htpasswd: looking at {path} failed", outcome, path=self.path)
        elif isinstance(outcome, str):
            # Once per problem, not once a second.
            if outcome != self._reload_problem:
                self._reload_problem = outcome
                _log.warn(
                    "htpasswd: not reloaded, keeping the {count} users read before: {problem}",
                    count=len(self._htpasswd.users),
                    problem=outcome,
                )
        elif outcome is not None:
            self._htpasswd = outcome
            self._generation += 1
            self._cache.clear()
            self._reload_problem = None
            _log.info(
                "htpasswd: reloaded {path}: {count} users",
                path=self.path,
                count=len(outcome.users),
            )
        waiters, self._looking = self._looking or [], None
        for waiter in waiters:
            waiter.callback(None)


@implementer(IAccessControllerFactory)
class HtpasswdAccessControllerFactory:
    """Makes L{HtpasswdAccessController}s from C{realm} and C{path}, both required."""

    name = "htpasswd"

    def create(self, options: Mapping[str, Any]) -> IAccessController:
        """
        See L{IAccessControllerFactory.create}.  Creates a missing file (see
        L{create_htpasswd}) and logs its password, then reads the file.
        """
        check_parameters("auth.htpasswd", options, {"realm": str, "path": str})
        for key in ("realm", "path"):
            if not options.get(key):
                raise ConfigError(f"auth.htpasswd.{key}", "is required")
        path = options["path"]
        try:
            password = create_htpasswd(path)
        except OSError as error:
            raise ConfigError(PATH_KEY, f"cannot create {path}: {error.strerror}") from None
        if password is not None:
            # The one place a secret is shown, as Distribution shows it.
            _log.warn(
                "htpasswd: {path} was missing; created it with user {user!r} and "
                "the generated password {password} (shown only this once)",
                path=path,
                user=DEFAULT_USER,
                password=password,
            )
        return HtpasswdAccessController(options["realm"], path)
