# -*- test-case-name: tests.test_names -*-
"""
Content digests (C{algorithm:hex}), as go-digest parses them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

from txregistry.errors import DIGEST_INVALID

# The algorithms a registry can verify, with the length of their hex form.
SUPPORTED_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}
CANONICAL_ALGORITHM = "sha256"

# The grammar of the OCI image spec's digest (any algorithm).
_DIGEST_GRAMMAR = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+", re.ASCII)
_LOWER_HEX = re.compile(r"[a-f0-9]+", re.ASCII)


@dataclass(frozen=True)
class Digest:
    """A parsed, supported digest."""

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def hasher(self) -> hashlib._Hash:
        """A fresh hash object of this digest's algorithm."""
        return hashlib.new(self.algorithm)

    @classmethod
    def parse(cls, text: str) -> Digest:
        """
        Parse C{text}; the digests parsed lately are remembered (every
        manifest request parses one or two, mostly the same ones).

        @raise txregistry.errors.RegistryError: DIGEST_INVALID when it is not
            a digest, or names an algorithm this registry cannot verify.
        """
        return _parse(text)

    @classmethod
    def of(cls, content: bytes, algorithm: str = CANONICAL_ALGORITHM) -> Digest:
        """The digest of C{content}."""
        return cls(algorithm, hashlib.new(algorithm, content).hexdigest())


@lru_cache(maxsize=1024)
def _parse(text: str) -> Digest:
    """L{Digest.parse}, remembered for valid digests (an error is not)."""
    if not _DIGEST_GRAMMAR.fullmatch(text):
        raise DIGEST_INVALID(f"invalid digest format: {text[:150]!r}")
    algorithm, hex_part = text.split(":", 1)
    length = SUPPORTED_ALGORITHMS.get(algorithm)
    if length is None:
        raise DIGEST_INVALID(f"unsupported digest algorithm: {algorithm}")
    if len(hex_part) != length or not _LOWER_HEX.fullmatch(hex_part):
        raise DIGEST_INVALID(f"invalid {algorithm} digest: {text[:150]!r}")
    return Digest(algorithm, hex_part)
