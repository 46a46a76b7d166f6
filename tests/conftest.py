"""
Fixtures for the real-HTTP API tests: txregistry processes on 127.0.0.1
(C{twist registry} as a subprocess, filesystem storage in a temporary
folder) and a client that checks, on every response, what every response
must carry.

Fixtures:
  - C{registry}: one process for the whole session (deletes enabled, a fixed
    C{http.secret}, C{X-Content-Type-Options: nosniff} configured); twice:
    without a blob descriptor cache, and with the Redis one (every test
    using it runs against both);
  - C{start_registry}: a factory for tests that need a process of their
    own (another config, or a second process over the same root);
  - C{start_registry_with}: the same, with whole config sections added
    (C{validation}, C{catalog}, ...);
  - C{module_registry}: a process of one test module's own;
  - C{repo}: a repository name no other test uses;
  - C{images}, C{clients}: the OCI layout the real clients push from, and
    their configuration and state (see L{clients});
  - C{s3_server}: an S3-compatible server (moto's) for the whole session,
    started by the first test that asks for it;
  - C{redis_server}: a C{redis-server} for the whole session, likewise.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from clients import Clients, ImageSet, build_test_images
from txregistry.testing.client import HTTPResponse, request
from txregistry.testing.process import RegistryProcess, base_config
from txregistry.testing.redisserver import RedisServerProcess
from txregistry.testing.s3server import S3ServerProcess

SECRET = "api-tests-secret"
EXTRA_HEADERS = {"X-Content-Type-Options": ["nosniff"]}
API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")

# Lines in a registry's log that mean something went wrong inside it.
LOG_PROBLEMS = ("Traceback", "Unhandled", "unexpected error")


def registry_config(
    root: Path,
    *,
    delete: bool = True,
    readonly: bool = False,
    secret: str = SECRET,
    cache: str | None = None,
    **http: Any,
) -> dict[str, Any]:
    """
    A config document: filesystem storage under C{root}, the fixed secret,
    the extra headers, C{storage.cache.blobdescriptor} if C{cache}, and
    C{http} options (C{relativeurls}, C{prefix}, C{host}, ...).
    """
    storage: dict[str, Any] = {
        "filesystem": {"rootdirectory": str(root)},
        "delete": {"enabled": delete},
    }
    if cache is not None:
        storage["cache"] = {"blobdescriptor": cache}
    if readonly:
        storage["maintenance"] = {"readonly": {"enabled": True}}
    http_section = {"addr": "127.0.0.1:0", "secret": secret, "headers": EXTRA_HEADERS, **http}
    return base_config(root, storage=storage, http=http_section)


class Registry:
    """
    A running txregistry process and what the tests need to talk to it.

    @ivar root: the storage root directory.
    @ivar prefix: the configured C{http.prefix}, ending with C{/}.
    """

    def __init__(self, process: RegistryProcess, root: Path, prefix: str = "/") -> None:
        self.process = process
        self.root = root
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.requests = 0

    # -- HTTP ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """C{http://127.0.0.1:PORT}."""
        return self.process.url

    @property
    def api(self) -> str:
        """The absolute URL of the API root, C{.../v2/}."""
        return f"{self.url}{self.prefix}v2/"

    def resolve(self, target: str) -> str:
        """
        An absolute URL on this process for C{target}: a path (below the
        API root unless it starts with C{/}), or a Location header, whose
        scheme and host are replaced by this process's (C{http.host} names
        another host).
        """
        if target.startswith(("http://", "https://")):
            parts = urlsplit(target)
            return self.url + parts.path + (f"?{parts.query}" if parts.query else "")
        if target.startswith("/"):
            return self.url + target
        return self.api + target

    def request(
        self,
        method: str,
        target: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> HTTPResponse:
        """
        Send one request and check what every response must carry: never a
        5xx, the API version header and the configured extra headers.
        """
        response = request(method, self.resolve(target), body, headers, timeout=timeout)
        self.requests += 1
        assert response.status < 500, (method, target, response.status, response.body)
        assert response.header(API_VERSION[0]) == API_VERSION[1], (method, target)
        for name, values in EXTRA_HEADERS.items():
            assert response.header(name) == ", ".join(values), (method, target, name)
        return response

    # -- pushing ---------------------------------------------------------------

    def push(self, name: str, data: bytes, algorithm: str = "sha256") -> str:
        """Push C{data} to C{name} in one POST; its digest."""
        digest = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
        response = self.request("POST", f"{name}/blobs/uploads/?digest={digest}", data)
        assert response.status == 201, response.body
        return digest

    def start_upload(self, name: str) -> HTTPResponse:
        """POST an upload; the 202 response."""
        response = self.request("POST", f"{name}/blobs/uploads/")
        assert response.status == 202, response.body
        return response

    # -- the storage root ------------------------------------------------------

    @property
    def v2_root(self) -> Path:
        """Distribution's layout root under the storage root."""
        return self.root / "docker" / "registry" / "v2"

    def blob_file(self, digest: str) -> Path:
        """Where the blob's data lives."""
        algorithm, hex_part = digest.split(":", 1)
        return self.v2_root / "blobs" / algorithm / hex_part[:2] / hex_part / "data"

    def link_file(self, name: str, digest: str) -> Path:
        """The link file that makes the blob part of C{name}."""
        algorithm, hex_part = digest.split(":", 1)
        return self.v2_root / "repositories" / name / "_layers" / algorithm / hex_part / "link"

    def uploads_dir(self, name: str) -> Path:
        """The folder of C{name}'s uploads in progress."""
        return self.v2_root / "repositories" / name / "_uploads"

    def upload_entries(self, name: str) -> list[str]:
        """The uploads in progress of C{name}, as stored."""
        folder = self.uploads_dir(name)
        return sorted(entry.name for entry in folder.iterdir()) if folder.exists() else []

    # -- the log -----------------------------------------------------------------

    def log_size(self) -> int:
        """How many bytes the process has logged so far."""
        try:
            return self.process.log_path.stat().st_size
        except OSError:
            return 0

    def log_problems(self, since: int = 0) -> list[str]:
        """Lines logged since C{since} that say something went wrong."""
        try:
            with open(self.process.log_path, "rb") as log:
                log.seek(since)
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if any(p in line for p in LOG_PROBLEMS)]


def _start(
    workdir: Path,
    root: Path,
    name: str,
    sections: Mapping[str, Any] | None = None,
    **options: Any,
) -> Registry:
    config = registry_config(root, **options)
    config.update(sections or {})
    process = RegistryProcess(workdir, config, name=name)
    process.start()
    return Registry(process, root, options.get("prefix", "/"))


@pytest.fixture(scope="session", params=["nocache", "redis"])
def registry(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Registry]:
    """
    The shared registry process: deletes enabled, fixed secret; without a
    descriptor cache, or with Redis's (so that a cached answer that storage
    would not give fails the same tests).
    """
    workdir = tmp_path_factory.mktemp(f"shared-registry-{request.param}")
    if request.param == "redis":
        redis: RedisServerProcess = request.getfixturevalue("redis_server")
        server = _start(
            workdir,
            workdir / "root",
            "shared-redis",
            {"redis": {"addr": redis.addr}},
            cache="redis",
        )
    else:
        server = _start(workdir, workdir / "root", "shared")
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture(autouse=True)
def _shared_registry_log_is_clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that made the shared registry log a traceback."""
    if "registry" not in request.fixturenames:
        yield
        return
    server = request.getfixturevalue("registry")
    if not isinstance(server, Registry):  # a module's own fixture of that name
        yield
        return
    mark = server.log_size()
    yield
    problems = server.log_problems(mark)
    assert not problems, "the registry logged:\n" + "\n".join(problems)


StartRegistry = Callable[..., Registry]


@contextmanager
def _registry_starter(tmp_path: Path, label: str) -> Iterator[Callable[..., Registry]]:
    """
    A function that starts registries of one's own:
    C{start(sections=None, root=None, **http_options)}, each in its own
    folder, with a new storage root unless C{root} is given; at teardown
    each is stopped, and fails the test if it logged a traceback.
    """
    started: list[Registry] = []

    def start(
        sections: Mapping[str, Any] | None = None, root: Path | None = None, **options: Any
    ) -> Registry:
        name = f"{label}-{len(started)}"
        workdir = tmp_path / name
        server = _start(workdir, root or workdir / "root", name, sections, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.process.stop()
    for server in started:
        problems = server.log_problems()
        assert not problems, f"{server.process.name} logged:\n" + "\n".join(problems)


@pytest.fixture
def start_registry(tmp_path: Path) -> Iterator[StartRegistry]:
    """
    Start registries of one's own: C{start_registry(root=None, delete=True,
    readonly=False, secret=SECRET, **http_options)}; a new storage root
    unless C{root} is given.  Each is stopped at teardown, and fails the
    test if it logged a traceback.
    """
    with _registry_starter(tmp_path, "registry") as start:
        yield lambda root=None, **options: start(None, root, **options)


@pytest.fixture(scope="module")
def module_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """
    A process for one test module, over a storage root of its own: for
    tests that see everything stored (the catalog).  Fails the module's
    last test if it logged a traceback.
    """
    workdir = tmp_path_factory.mktemp("module-registry")
    server = _start(workdir, workdir / "root", "module")
    try:
        yield server
    finally:
        server.process.stop()
    problems = server.log_problems()
    assert not problems, "the module's registry logged:\n" + "\n".join(problems)


@pytest.fixture
def start_registry_with(tmp_path: Path) -> Iterator[Callable[..., Registry]]:
    """
    Like C{start_registry}, with whole top-level config sections added or
    replaced: C{start_registry_with(sections, root=None, **http_options)},
    as in C{start_registry_with({"catalog": {"maxentries": 3}})}.
    """
    with _registry_starter(tmp_path, "configured") as start:
        yield start


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> ImageSet:
    """The OCI layout the tests push from (built once, the same every time)."""
    return build_test_images(tmp_path_factory.mktemp("images") / "layout")


@pytest.fixture(scope="session")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clients]:
    """The clients' configuration, storage and state, in a folder of their own."""
    folder = Clients(tmp_path_factory.mktemp("clients"))
    try:
        yield folder
    finally:
        folder.close()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3ServerProcess]:
    """
    An S3-compatible server (moto's) on 127.0.0.1 for the session; each
    user makes a bucket of its own (C{s3_server.create_bucket}).
    """
    with S3ServerProcess(tmp_path_factory.mktemp("s3-server")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServerProcess]:
    """A C{redis-server} on 127.0.0.1 for the session (Debian's package)."""
    with RedisServerProcess(tmp_path_factory.mktemp("redis-server")) as server:
        yield server


@pytest.fixture
def repo() -> str:
    """A repository name that no other test uses."""
    return f"tests/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def blob() -> bytes:
    """Some random bytes, not a round number of them."""
    return os.urandom(100_003)
