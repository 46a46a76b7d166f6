# -*- test-case-name: tests.test_auth_htpasswd -*-
"""
Apache htpasswd files of bcrypt hashes, for the C{htpasswd} access
controller (L{txregistry.auth.htpasswd}): reading one (bcrypt only; any
other hash is refused, naming the line and the user, never the hash),
creating a missing one as Distribution does, and checking a password.
Everything here blocks: callers run it in a thread.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import bcrypt

from txregistry.config import ConfigError

# The user a missing file is created with, and the cost of its hash
# (Distribution's bcrypt.DefaultCost).
DEFAULT_USER = "admin"
GENERATED_COST = 10

PATH_KEY = "auth.htpasswd.path"
_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
_DES_CRYPT = re.compile(r"[./A-Za-z0-9]{13}")
Signature = tuple[int, int, int]


@dataclass(frozen=True)
class Htpasswd:
    """
    What an htpasswd file says.

    @ivar users: each user's bcrypt hash.
    @ivar dummy: a bcrypt hash of the file's usual cost that no password
        matches, checked for unknown users.
    @ivar signature: the file's inode, size and modification time when read.
    """

    users: Mapping[str, bytes]
    dummy: bytes
    signature: Signature


def _hash_kind(hashed: str) -> str:
    """What kind of (unaccepted) hash C{hashed} looks like, never the hash itself."""
    for prefix, kind in [
        ("$apr1$", "an MD5 ($apr1$) hash"),
        ("{SHA}", "a SHA-1 ({SHA}) hash"),
        ("$1$", "an MD5-crypt ($1$) hash"),
        ("$5$", "a SHA-256-crypt ($5$) hash"),
        ("$6$", "a SHA-512-crypt ($6$) hash"),
        ("$2", "a malformed or old bcrypt hash"),
    ]:
        if hashed.startswith(prefix):
            return kind
    if not hashed:
        return "no hash"
    if _DES_CRYPT.fullmatch(hashed):
        return "a crypt (DES) hash"
    return "no known hash (plain text?)"


def parse_htpasswd(data: bytes, path: str) -> dict[str, bytes]:
    """
    The users and hashes of an htpasswd file, as Distribution reads one:
    lines trimmed, blank ones and those starting with C{#} skipped, each
    other one C{user:hash}, the last line of a user winning.

    @raise ConfigError: naming C{auth.htpasswd.path}, the line and the user
        (never a hash: a line of the wrong kind may hold a password in clear)
        for a line that is not C{user:hash}, not UTF-8, or whose hash is not
        bcrypt.
    """
    users: dict[str, bytes] = {}
    for number, raw in enumerate(data.splitlines(), 1):
        where = f"{path}, line {number}"
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ConfigError(PATH_KEY, f"{where}: not UTF-8") from None
        if not line or line.startswith("#"):
            continue
        user, colon, hashed = line.partition(":")
        if not colon:
            raise ConfigError(PATH_KEY, f"{where}: not user:hash")
        if not user:
            raise ConfigError(PATH_KEY, f"{where}: no user name before the colon")
        match = _BCRYPT.fullmatch(hashed)
        if match is None or not 4 <= int(match.group(1)) <= 31:
            raise ConfigError(
                PATH_KEY,
                f"{where}: user {user!r} has {_hash_kind(hashed)}; only bcrypt "
                "($2a$, $2b$, $2y$) is accepted (htpasswd -B makes it)",
            )
        users[user] = hashed.encode("ascii")
    return users


_dummies: dict[int, bytes] = {}


def _dummy_hash(users: Mapping[str, bytes]) -> bytes:
    """A hash no password matches, of the cost most users' hashes have."""
    costs = Counter(int(hashed[4:6]) for hashed in users.values())
    cost = max(costs, key=lambda c: (costs[c], c)) if costs else GENERATED_COST
    if cost not in _dummies:
        _dummies[cost] = bcrypt.hashpw(secrets.token_bytes(32).hex().encode(), bcrypt.gensalt(cost))
    return _dummies[cost]


def file_signature(status: os.stat_result) -> Signature:
    """What tells a changed file: its inode, size and modification time."""
    return (status.st_ino, status.st_size, status.st_mtime_ns)


def load_htpasswd(path: str) -> Htpasswd:
    """
    Read and parse the file at C{path}.  Blocks: call it in a thread once
    the reactor runs.

    @raise ConfigError: naming C{auth.htpasswd.path}, when it cannot be read
        or says something wrong (see L{parse_htpasswd}).
    """
    try:
        with open(path, "rb") as file:
            signature = file_signature(os.fstat(file.fileno()))
            data = file.read()
    except OSError as error:
        raise ConfigError(PATH_KEY, f"cannot read {path}: {error.strerror}") from None
    users = parse_htpasswd(data, path)
    return Htpasswd(users, _dummy_hash(users), signature)


def create_htpasswd(path: str, user: str = DEFAULT_USER) -> str | None:
    """
    Create the file at C{path} when nothing is there, as Distribution does:
    its folder too (mode 0700), the file (mode 0600) holding C{user} with a
    generated password, bcrypt-hashed.

    @return: the generated password, or L{None} when something was there.
    """
    if os.path.lexists(path):
        return None
    password = secrets.token_urlsafe(32)
    hashed = bcrypt.hashpw(password.encode("ascii"), bcrypt.gensalt(GENERATED_COST))
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, 0o700, exist_ok=True)
    try:
        # Exclusive: of processes started together, one creates the file.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(descriptor, "wb") as file:
        file.write(user.encode("utf-8") + b":" + hashed + b"\n")
    return password


def bcrypt_verify(password: bytes, hashed: bytes) -> bool:
    """
    Whether C{password} matches the bcrypt hash C{hashed}, compared in
    constant time.  bcrypt reads at most 72 bytes of a password (Go's, as
    Distribution uses it, ignores the rest); the library refuses longer
    ones, so they are cut.
    """
    return hmac.compare_digest(bcrypt.hashpw(password[:72], hashed), hashed)
