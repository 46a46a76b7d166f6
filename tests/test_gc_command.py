"""
The C{txregistry} command's garbage-collect (and serve) as a user runs them:
a process on a filesystem config, its output and exit status.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from txregistry.commands.terminal import TerminalReporter
from txregistry.digest import Digest
from txregistry.testing.process import free_port
from txregistry.testing.redisserver import RedisServerProcess

V2 = Path("docker/registry/v2")


def run(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "txregistry", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A data folder holding one tagged image and one orphan blob, all an hour old."""
    root = tmp_path / "root"
    v2 = root / V2

    def blob(data: bytes, repository: str) -> Digest:
        digest = Digest.of(data)
        path = v2 / "blobs/sha256" / digest.hex[:2] / digest.hex / "data"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        link = v2 / "repositories" / repository / "_layers/sha256" / digest.hex / "link"
        link.parent.mkdir(parents=True)
        link.write_text(str(digest))
        return digest

    config = blob(b'{"os": "linux"}', "app")
    layer = blob(b"layer", "app")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": str(config),
                "size": 15,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": str(layer),
                    "size": 5,
                }
            ],
        }
    ).encode()
    digest = Digest.of(manifest)
    path = v2 / "blobs/sha256" / digest.hex[:2] / digest.hex / "data"
    path.parent.mkdir(parents=True)
    path.write_bytes(manifest)
    for link in (
        v2 / "repositories/app/_manifests/revisions/sha256" / digest.hex / "link",
        v2 / "repositories/app/_manifests/tags/latest/current/link",
    ):
        link.parent.mkdir(parents=True)
        link.write_text(str(digest))
    blob(b"orphan", "app")
    hour_ago = time.time() - 3700
    for file in root.rglob("*"):
        os.utime(file, (hour_ago, hour_ago))
    return root


@pytest.fixture
def config(root: Path, tmp_path: Path) -> Path:
    config = tmp_path / "config.yml"
    config.write_text(
        yaml.safe_dump({"version": 0.1, "storage": {"filesystem": {"rootdirectory": str(root)}}})
    )
    return config


ORPHAN = Digest.of(b"orphan")


def orphan_stored(root: Path) -> bool:
    return (root / V2 / "blobs/sha256" / ORPHAN.hex[:2] / ORPHAN.hex / "data").exists()


def test_collects(root: Path, config: Path) -> None:
    """Distribution's lines, then the summary; the orphan and its link are gone."""
    result = run("garbage-collect", str(config))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "app"
    assert lines[1].startswith("app: marking manifest sha256:")
    assert "3 blobs marked, 1 blobs and 0 manifests eligible for deletion" in lines
    assert f"blob eligible for deletion: {ORPHAN}" in lines
    assert lines[-1] == "3 blobs marked, 1 blobs and 0 manifests deleted, 6 bytes freed"
    assert not orphan_stored(root)
    assert not (root / V2 / "repositories/app/_layers/sha256" / ORPHAN.hex).exists()
    assert result.stderr == ""


def test_dry_run_and_quiet(root: Path, config: Path) -> None:
    result = run("garbage-collect", "-d", "-q", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "3 blobs marked, 1 blobs and 0 manifests eligible for deletion, 6 bytes to free"
    ]
    assert orphan_stored(root)


def test_min_age(root: Path, config: Path) -> None:
    """Content younger than --min-age stays."""
    result = run("garbage-collect", "--min-age", "2h", "-q", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].endswith(", 1 kept as younger than the minimum age")
    assert orphan_stored(root)


def test_config_by_option_and_environment(root: Path, config: Path) -> None:
    assert run("garbage-collect", "-q", "--config", str(config)).returncode == 0
    assert not orphan_stored(root)
    result = run("garbage-collect", "-q", env={"REGISTRY_CONFIGURATION_PATH": str(config)})
    assert result.returncode == 0, result.stderr


def test_lease_held(root: Path, config: Path) -> None:
    """A second collector fails in one line, deleting nothing."""
    lease = root / V2 / "_txregistry/gc/lease"
    lease.parent.mkdir(parents=True)
    lease.write_text(json.dumps({"owner": "elsewhere/1", "expires": time.time() + 600}))
    result = run("garbage-collect", str(config))
    assert result.returncode == 1
    assert result.stderr == (
        "txregistry: failed to garbage collect: another collector holds the lease (elsewhere/1)\n"
    )
    assert orphan_stored(root)


def test_unreadable_manifest(root: Path, config: Path) -> None:
    for data in (root / V2 / "blobs").rglob("data"):
        if data.read_bytes().startswith(b'{"schemaVersion"'):
            data.write_bytes(b"\x00garbage")
    result = run("garbage-collect", str(config))
    assert result.returncode == 1
    assert "cannot be read (not JSON)" in result.stderr
    assert "Traceback" not in result.stderr
    assert orphan_stored(root)


@pytest.mark.parametrize(
    ("arguments", "status", "message"),
    [
        (["--min-age", "soon"], 2, 'txregistry: --min-age: must be a duration such as "10s"\n'),
        (["--parallel", "0"], 2, "txregistry: --parallel: must be at least 1\n"),
        (["/nonexistent.yml"], 1, None),
        (["--bogus"], 2, None),
    ],
)
def test_mistakes(arguments: list[str], status: int, message: str | None, config: Path) -> None:
    given = (
        arguments
        if "/nonexistent.yml" in arguments or "--bogus" in arguments
        else [*arguments, str(config)]
    )
    result = run("garbage-collect", *given)
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    if message is not None:
        assert result.stderr == message
    if "/nonexistent.yml" in arguments:
        assert result.stderr.startswith(
            "txregistry: configuration error: /nonexistent.yml: cannot read"
        )


def test_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.yml"
    config.write_text("version: 0.1\nstorage: {filesystem: {rootdirectory: /x}}\nbogus: 1\n")
    result = run("garbage-collect", str(config))
    assert result.returncode == 1
    assert result.stderr == "txregistry: configuration error: bogus: unknown key\n"


def test_help() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("serve", "garbage-collect", "check"):
        assert command in result.stdout
    assert run().returncode == 2


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal() -> None:
    """A progress line on a terminal, cleared before account lines; none elsewhere."""
    output, errors = io.StringIO(), Terminal()
    reporter = TerminalReporter(output, errors, interval=0.0)
    reporter.progress("deleting blobs", 1, 2)
    reporter.line("blob eligible for deletion: x")
    reporter.progress("deleting blobs", 2, 2)
    reporter.finish()
    assert output.getvalue() == "blob eligible for deletion: x\n"
    assert errors.getvalue() == (
        "\r\x1b[Kdeleting blobs: 1/2\r\x1b[K\r\x1b[Kdeleting blobs: 2/2\r\x1b[K"
    )
    quiet_errors = io.StringIO()
    reporter = TerminalReporter(io.StringIO(), quiet_errors, quiet=True)
    reporter.progress("x", 1, 1)
    reporter.line("nothing")
    assert quiet_errors.getvalue() == ""


def test_serve(tmp_path: Path) -> None:
    """C{txregistry serve CONFIG}, as Distribution's C{registry serve}, starts the server."""
    from txregistry.testing.client import request
    from txregistry.testing.process import RegistryProcess, base_config

    class Served(RegistryProcess):
        def command(self, config_path: Path | None) -> list[str]:
            return [sys.executable, "-m", "txregistry", "serve", str(config_path)]

    with Served(tmp_path, base_config(tmp_path / "root")) as served:
        response = request("GET", f"{served.url}/v2/")
        assert (response.status, response.body) == (200, b"{}")
    assert "Traceback" not in served.output()


def _redis_config(config: Path, addr: str) -> None:
    """The config with the Redis descriptor cache at C{addr}."""
    document = yaml.safe_load(config.read_text())
    document["storage"]["cache"] = {"blobdescriptor": "redis"}
    document["redis"] = {"addr": addr, "dialtimeout": "500ms"}
    config.write_text(yaml.safe_dump(document))


def test_empties_the_redis_cache(root: Path, config: Path, tmp_path: Path) -> None:
    """
    After deleting, the registries' Redis cache is emptied: it knew the
    orphan (Distribution leaves flushing it to the operator); a dry run
    leaves it be.
    """
    with RedisServerProcess(tmp_path / "redis") as redis:
        _redis_config(config, redis.addr)
        redis.command("SADD", "repository::app::blobs", str(ORPHAN))
        redis.command("HSET", f"blobs::{ORPHAN}", "digest", str(ORPHAN), "size", "6")
        redis.command("SET", "unrelated", "kept")
        dry = run("garbage-collect", "-d", "-q", str(config))
        assert dry.returncode == 0, dry.stderr
        assert redis.keys() == [f"blobs::{ORPHAN}", "repository::app::blobs", "unrelated"]
        result = run("garbage-collect", "-q", str(config))
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert not orphan_stored(root)
        # The cache's generation changed: every registry empties its memory.
        assert redis.keys() == ["txregistry::generation", "unrelated"]


def test_redis_cache_unreachable(root: Path, config: Path) -> None:
    """The collection is done; that the cache could not be emptied is a warning."""
    _redis_config(config, f"127.0.0.1:{free_port()}")
    result = run("garbage-collect", "-q", str(config))
    assert result.returncode == 0, result.stderr
    assert not orphan_stored(root)
    assert "warning: the descriptor cache could not be emptied" in result.stderr
