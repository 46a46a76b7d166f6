"""
The example third-party storage driver of C{tests/plugin_example} (SQLite),
as its users would see it: found among the Twisted plugins, passing the
shared driver suite, and storing what a real registry process is sent.

Each test copies the example to a temporary folder and puts the copy on the
path, as installing it would, until the test ends: Twisted writes a
C{dropin.cache} beside the plugin modules it scans, and none may land in the
repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from twisted.plugin import IPlugin
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

import twisted.plugins
from support import temporary_directory
from txregistry.config import ConfigError
from txregistry.config.notifications import EndpointConfig
from txregistry.drivers.plugins import driver_factories
from txregistry.events.plugins import sink_factories
from txregistry.interfaces import IEventSinkFactory, IStorageDriver, IStorageDriverFactory
from txregistry.testing.client import request
from txregistry.testing.drivers import DriverTestsMixin
from txregistry.testing.process import RegistryProcess, base_config

EXAMPLE = Path(__file__).parent / "plugin_example"
# Where a dropin.cache would appear if a test scanned the example in place.
EXAMPLE_CACHE = EXAMPLE / "twisted" / "plugins" / "dropin.cache"


def copy_example(case: SynchronousTestCase) -> Path:
    """A copy of the example in a temporary folder, removed after the test."""
    copy = Path(temporary_directory(case)) / "plugin_example"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__", "dropin.cache"))
    return copy


def install_example(case: SynchronousTestCase) -> Path:
    """
    Make a copy of the example importable, and its plugin found, until the
    test ends.

    @return: the copy.
    """
    copy = copy_example(case)
    case.patch(sys, "path", [str(copy), *sys.path])
    # twisted.plugins reads sys.path once, when first imported.
    plugins = str(copy / "twisted" / "plugins")
    case.patch(twisted.plugins, "__path__", [*twisted.plugins.__path__, plugins])

    def forget_modules() -> None:
        for name in list(sys.modules):
            if name.partition(".")[0] == "txregistry_sqlite" or name.endswith(
                ".txregistry_sqlite_plugin"
            ):
                del sys.modules[name]

    case.addCleanup(forget_modules)
    return copy


class PluginTests(SynchronousTestCase):
    """The example's plugin module makes the driver known by its name."""

    def test_found(self) -> None:
        """Installed, the example provides a driver factory named C{sqlite}."""
        copy = install_example(self)
        factory = driver_factories()["sqlite"]
        self.assertTrue(verifyObject(IStorageDriverFactory, factory))
        self.assertTrue(IPlugin.providedBy(factory))
        driver = factory.create({"path": str(copy / "registry.db")})
        self.assertTrue(verifyObject(IStorageDriver, driver))
        self.assertEqual(driver.name, "sqlite")
        self.assertTrue((copy / "twisted" / "plugins" / "dropin.cache").exists())
        self.assertFalse(EXAMPLE_CACHE.exists())

    def test_not_found_when_not_installed(self) -> None:
        """The example in the repository is not on the path by itself."""
        self.assertNotIn("sqlite", driver_factories())
        self.assertNotIn("txregistry_sqlite", sys.modules)

    def test_parameters(self) -> None:
        """The factory names the key at fault: unknown, of the wrong type, or missing."""
        install_example(self)
        factory = driver_factories()["sqlite"]
        for parameters, key in [
            ({"path": "/x.db", "bogus": 1}, "storage.sqlite.bogus"),
            ({"path": 5}, "storage.sqlite.path"),
            ({}, "storage.sqlite.path"),
        ]:
            error = self.assertRaises(ConfigError, factory.create, parameters)
            self.assertEqual(error.key, key, parameters)


class SqliteDriverTests(DriverTestsMixin, TestCase):
    """The shared driver suite against the example's driver, as its authors run it."""

    def make_driver(self) -> IStorageDriver:
        install_example(self)
        # Their tests import this at the top; here the example is installed per test.
        from txregistry_sqlite.driver import SqliteDriver

        driver = SqliteDriver(str(Path(temporary_directory(self)) / "registry.db"))
        self.addCleanup(driver.close)
        return driver


class RegistryProcessTests(SynchronousTestCase):
    """A registry process stores blobs with the example's driver."""

    def test_push_and_pull(self) -> None:
        """A blob pushed in a POST and a PUT is pulled back, and is in the database."""
        copy = copy_example(self)
        workdir = Path(temporary_directory(self))
        path = os.pathsep.join(filter(None, [str(copy), os.environ.get("PYTHONPATH")]))
        registry = RegistryProcess(workdir, sqlite_config(workdir), env={"PYTHONPATH": path})
        with registry:
            push_and_pull_blob(self, registry, workdir)
        self.assertNotIn("Traceback", registry.output())
        self.assertFalse((workdir / "unused").exists())


def sqlite_config(workdir: Path) -> dict[str, Any]:
    """A registry config storing in the example's driver, in C{workdir}/registry.db."""
    return base_config(
        workdir / "unused",
        storage={"sqlite": {"path": str(workdir / "registry.db")}, "delete": {"enabled": True}},
    )


def push_and_pull_blob(case: SynchronousTestCase, registry: RegistryProcess, workdir: Path) -> None:
    """
    Push a blob in a POST and a PUT to C{registry}, started on
    L{sqlite_config}C{(workdir)}, pull it back, and find it in the database.
    """
    blob = os.urandom(300_007)
    digest = hashlib.sha256(blob).hexdigest()
    blobs = f"{registry.url}/v2/example/sqlite/blobs"
    started = request("POST", f"{blobs}/uploads/")
    case.assertEqual(started.status, 202, started.body)
    location = urljoin(registry.url, started.header("Location") or "")
    separator = "&" if "?" in location else "?"
    finished = request("PUT", f"{location}{separator}digest=sha256:{digest}", blob)
    case.assertEqual(finished.status, 201, finished.body)
    pulled = request("GET", f"{blobs}/sha256:{digest}")
    case.assertEqual(pulled.status, 200, pulled.body[:200])
    case.assertEqual(pulled.body, blob)
    stored = f"/docker/registry/v2/blobs/sha256/{digest[:2]}/{digest}/data"
    with closing(sqlite3.connect(workdir / "registry.db")) as db:
        row = db.execute("SELECT content FROM files WHERE path = ?", (stored,)).fetchone()
    case.assertEqual(row, (blob,))


class EventSinkTests(SynchronousTestCase):
    """The example's event sink, as a third party's notifier."""

    def test_found(self) -> None:
        """The sink is found among the plugins by its name, and makes sinks."""
        install_example(self)
        factory = sink_factories()["sqlite"]
        self.assertTrue(verifyObject(IPlugin, factory))
        self.assertTrue(verifyObject(IEventSinkFactory, factory))

    def test_options_checked(self) -> None:
        """A missing path, or an unknown option, is a config error naming the key."""
        install_example(self)
        factory = sink_factories()["sqlite"]
        for options, key in [({}, "options.path"), ({"path": "x", "table": "y"}, "options.table")]:
            endpoint = EndpointConfig(name="audit", url="", sink="sqlite", options=options)
            error = self.assertRaises(ConfigError, factory.create, endpoint)
            self.assertEqual(error.key, key)

    def test_registry_stores_events(self) -> None:
        """A registry process sends a push's event to the example's sink."""
        copy = copy_example(self)
        workdir = Path(temporary_directory(self))
        path = os.pathsep.join(filter(None, [str(copy), os.environ.get("PYTHONPATH")]))
        config = base_config(workdir / "root")
        events_db = workdir / "events.db"
        config["notifications"] = {
            "endpoints": [{"name": "audit", "sink": "sqlite", "options": {"path": str(events_db)}}],
            "outbox": {"path": str(workdir / "outbox")},
        }
        registry = RegistryProcess(workdir, config, env={"PYTHONPATH": path})
        with registry:
            blob = os.urandom(1000)
            digest = hashlib.sha256(blob).hexdigest()
            url = f"{registry.url}/v2/example/events/blobs/uploads/?digest=sha256:{digest}"
            self.assertEqual(request("POST", url, blob).status, 201)
            deadline = time.monotonic() + 10
            rows: list[Any] = []
            while not rows and time.monotonic() < deadline:
                time.sleep(0.1)
                with closing(sqlite3.connect(events_db)) as db:
                    rows = db.execute("SELECT action, document FROM events").fetchall()
        self.assertEqual(len(rows), 1)
        action, document = rows[0]
        self.assertEqual(action, "push")
        self.assertEqual(json.loads(document)["target"]["digest"], f"sha256:{digest}")
        self.assertNotIn("Traceback", registry.output())
