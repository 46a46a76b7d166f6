# -*- test-case-name: tests.test_names -*-
"""
Content digests (C{algorithm:hex}), as go-digest parses them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from txregistry.errors import DIGEST_INVALID

# The algorithms a registry can verify, with the length of their hex form.
SUPPORTED_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}
CANONICAL_ALGORITHM = "sha256"

# The grammar of the OCI image spec's digest (any algorithm).
_DIGEST_GRAMMAR = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+", re.ASCII)


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
        Parse C{text}.

        @raise txregistry.errors.RegistryError: DIGEST_INVALID when it is not
            a digest, or names an algorithm this registry cannot verify.
        """
        if not _DIGEST_GRAMMAR.fullmatch(text):
            raise DIGEST_INVALID(f"invalid digest format: {text[:150]!r}")
        algorithm, hex_part = text.split(":", 1)
        length = SUPPORTED_ALGORITHMS.get(algorithm)
        if length is None:
            raise DIGEST_INVALID(f"unsupported digest algorithm: {algorithm}")
        if len(hex_part) != length or not re.fullmatch(r"[a-f0-9]+", hex_part, re.ASCII):
            raise DIGEST_INVALID(f"invalid {algorithm} digest: {text[:150]!r}")
        return cls(algorithm, hex_part)

    @classmethod
    def of(cls, content: bytes, algorithm: str = CANONICAL_ALGORITHM) -> Digest:
        """The digest of C{content}."""
        return cls(algorithm, hashlib.new(algorithm, content).hexdigest())
