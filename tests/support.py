"""
Helpers shared by the real-HTTP test modules: digests of test data and the
check every OCI error response must pass.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase

# A well-formed digest of content no test stores.
MISSING = "sha256:" + "0" * 64
# The digest of no bytes at all.
EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def sha256(data: bytes) -> str:
    """The sha256 digest string of C{data}."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def assert_error(response: Any, status: int, *codes: str) -> None:
    """An OCI error response of C{status} with exactly C{codes}, in order."""
    assert response.status == status, response.body
    assert response.header("Content-Type").startswith("application/json")
    assert response.error_codes() == list(codes), response.body


def temporary_directory(case: SynchronousTestCase, prefix: str = "txregistry-test-") -> str:
    """
    A new folder, removed after C{case}.  Not C{TestCase.mktemp}: under
    pytest it would make folders in the current directory, the repository.
    """
    directory = tempfile.mkdtemp(prefix=prefix)
    case.addCleanup(shutil.rmtree, directory, ignore_errors=True)
    return directory


async def wait_until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Let the reactor run until C{condition()} holds; fail after C{timeout} seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await deferLater(reactor, 0.01, lambda: None)
