"""
Storage middleware: the C{redirect} middleware's URLs and options, the
driver suite through a middleware (it delegates everything else), the chain
the config describes, plugin discovery, and a registry process redirecting
blob downloads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.plugin import IPlugin
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

import twisted.plugins
from support import sha256, temporary_directory
from txregistry.config import ConfigError, MiddlewareEntry, load_config
from txregistry.drivers.base import ValidatingDriver
from txregistry.drivers.inmemory import InMemoryDriver
from txregistry.drivers.plugins import driver_factories
from txregistry.interfaces import IPagedLister, IStorageDriver, IStorageMiddlewareFactory
from txregistry.middleware.plugins import storage_middleware_factories
from txregistry.middleware.redirect import RedirectMiddleware, RedirectMiddlewareFactory
from txregistry.middleware.storage import DelegatingDriver, apply_storage_middleware
from txregistry.service import build_service
from txregistry.testing.drivers import DriverTestsMixin

BLOB_PATH = "/docker/registry/v2/blobs/sha256/ab/" + "ab" * 32 + "/data"


def redirect(baseurl: str, driver: IStorageDriver | None = None) -> IStorageDriver:
    """C{driver} (a new in-memory one by default) behind the redirect middleware."""
    return RedirectMiddlewareFactory().wrap(driver or InMemoryDriver(), {"baseurl": baseurl})


class RedirectURLTests(SynchronousTestCase):
    """The URL is the base URL's scheme, host and path joined with the driver path."""

    def url(self, baseurl: str, path: str = BLOB_PATH, method: str = "GET") -> str | None:
        result: str | None = self.successResultOf(redirect(baseurl).redirect_url(method, path))
        return result

    def test_urls(self) -> None:
        """As Distribution 3 builds them (its middleware_test.go, and more)."""
        for baseurl, path, expected in [
            ("https://example.com/", BLOB_PATH, "https://example.com" + BLOB_PATH),
            ("https://example.com", BLOB_PATH, "https://example.com" + BLOB_PATH),
            ("http://example.com", "/morty/data", "http://example.com/morty/data"),
            ("https://example.com:5443", "/rick/data", "https://example.com:5443/rick/data"),
            ("https://example.com/path", "/morty/data", "https://example.com/path/morty/data"),
            ("https://example.com/path/", "/morty/data", "https://example.com/path/morty/data"),
            ("HTTPS://example.com/a//b/../c/", "/d", "https://example.com/a/c/d"),
            ("https://user:secret@example.com/p?q=1#f", "/d", "https://example.com/p/d"),
            ("https://example.com/a%20b/", "/d", "https://example.com/a%20b/d"),
            ("https://[::1]:8443/", "/d", "https://[::1]:8443/d"),
        ]:
            self.assertEqual(self.url(baseurl, path), expected, baseurl)

    def test_any_method(self) -> None:
        """HEAD is redirected like GET."""
        self.assertEqual(self.url("https://cdn.example/", "/a", "HEAD"), "https://cdn.example/a")

    def test_provides_driver(self) -> None:
        """The middleware is a storage driver named as the driver it wraps."""
        middleware = redirect("https://cdn.example/")
        self.assertTrue(verifyObject(IStorageDriver, middleware))
        self.assertIsInstance(middleware, RedirectMiddleware)
        self.assertEqual(middleware.name, "inmemory")


class RedirectOptionTests(SynchronousTestCase):
    """Bad options are named relative to the entry: C{options.<key>}."""

    def error(self, options: Mapping[str, Any]) -> ConfigError:
        return self.assertRaises(
            ConfigError, RedirectMiddlewareFactory().wrap, InMemoryDriver(), options
        )

    def test_missing(self) -> None:
        """C{baseurl} is required."""
        self.assertEqual(self.error({}).key, "options.baseurl")

    def test_not_a_string(self) -> None:
        error = self.error({"baseurl": 5})
        self.assertEqual((error.key, error.problem), ("options.baseurl", "must be a string"))

    def test_not_an_absolute_http_url(self) -> None:
        """Only an absolute http or https URL with a host will do."""
        for baseurl in (
            "example.com",
            "/cdn",
            "example.com:443",
            "ftp://example.com/",
            "https://",
            "https:///path",
            "https://example.com:port/",
            "https://[::1/",
            "https://exa mple.com/",
            "https://example.com/\r\nX-Injected: 1",
            "",
        ):
            error = self.error({"baseurl": baseurl})
            self.assertEqual(error.key, "options.baseurl", baseurl)
            self.assertNotIn("\n", error.problem.replace("\\n", ""), baseurl)

    def test_unknown_option(self) -> None:
        error = self.error({"baseurl": "https://cdn.example/", "bogus": 1})
        self.assertEqual((error.key, error.problem), ("options.bogus", "unknown key"))


class RedirectDriverTests(DriverTestsMixin, TestCase):
    """The driver suite through the redirect middleware: all else is delegated."""

    def make_driver(self) -> IStorageDriver:
        return redirect("https://cdn.example/")

    async def test_redirect_url_below_base(self) -> None:
        """Through the path checks, the URL is the base URL's."""
        url = await self.driver.redirect_url("GET", "/a/b")
        self.assertEqual(url, "https://cdn.example/a/b")


@implementer(IPagedLister)
class PagingDriver(InMemoryDriver):
    """An in-memory driver with pages of its own, which records what it is asked."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[Any, ...]] = []

    def list_page(self, path: str, after: str | None, limit: int | None) -> Deferred[list[str]]:
        self.asked.append(("list_page", path, after, limit))
        return succeed(["own"])

    def marked_folders(
        self, path: str, marks: Any, after: str | None, limit: int | None
    ) -> Deferred[list[str]]:
        self.asked.append(("marked_folders", path, tuple(marks), after, limit))
        return succeed(["own/folder"])


class PagedListingTests(SynchronousTestCase):
    """A middleware passes the wrapped driver's own pages through."""

    def test_own_pages_reached(self) -> None:
        """The wrapped driver's L{IPagedLister} is used, through the path checks."""
        raw = PagingDriver()
        driver = ValidatingDriver(redirect("https://cdn.example/", raw))
        self.assertTrue(verifyObject(IPagedLister, driver.driver))
        self.assertEqual(self.successResultOf(driver.list_page("/t", "a", 2)), ["own"])
        page = driver.marked_folders("/r", ("_layers",), "x/y", 3)
        self.assertEqual(self.successResultOf(page), ["own/folder"])
        self.assertEqual(
            raw.asked,
            [("list_page", "/t", "a", 2), ("marked_folders", "/r", ("_layers",), "x/y", 3)],
        )


@implementer(IStorageMiddlewareFactory)
class TaggingMiddlewareFactory:
    """Wraps a driver in a L{DelegatingDriver} tagged with the option C{tag}."""

    name = "tagging"

    def wrap(self, driver: IStorageDriver, options: Mapping[str, Any]) -> IStorageDriver:
        if "tag" not in options:
            raise ConfigError("options.tag", "missing")
        tagged = DelegatingDriver(driver)
        tagged.tag = options["tag"]  # type: ignore[attr-defined]
        return tagged


class ChainTests(SynchronousTestCase):
    """L{apply_storage_middleware} builds the chain the config lists."""

    factories: Mapping[str, IStorageMiddlewareFactory] = {
        "tagging": TaggingMiddlewareFactory(),
        "redirect": RedirectMiddlewareFactory(),
    }

    def entries(self, *entries: tuple[str, dict[str, Any], bool]) -> list[MiddlewareEntry]:
        return [
            MiddlewareEntry(f"middleware.storage[{index}]", name, options, disabled)
            for index, (name, options, disabled) in enumerate(entries)
        ]

    def test_in_order(self) -> None:
        """The first entry wraps the driver, the next wraps the first; disabled ones are skipped."""
        driver = InMemoryDriver()
        wrapped = apply_storage_middleware(
            driver,
            self.entries(
                ("tagging", {"tag": "inner"}, False),
                ("redirect", {}, True),
                ("tagging", {"tag": "outer"}, False),
            ),
            self.factories,
        )
        assert isinstance(wrapped, DelegatingDriver)
        inner = wrapped.driver
        assert isinstance(inner, DelegatingDriver)
        self.assertEqual((wrapped.tag, inner.tag), ("outer", "inner"))  # type: ignore[attr-defined]
        self.assertIs(inner.driver, driver)

    def test_none(self) -> None:
        """Without entries the driver is unchanged."""
        driver = InMemoryDriver()
        self.assertIs(apply_storage_middleware(driver, [], self.factories), driver)

    def test_unknown_name(self) -> None:
        """An unknown name is named, with the installed ones."""
        error = self.assertRaises(
            ConfigError,
            apply_storage_middleware,
            InMemoryDriver(),
            self.entries(("tagging", {"tag": "t"}, False), ("cloudfront", {}, False)),
            self.factories,
        )
        self.assertEqual(error.key, "middleware.storage[1].name")
        self.assertIn("'cloudfront'", error.problem)
        self.assertIn("installed: redirect, tagging", error.problem)

    def test_option_errors_name_the_entry(self) -> None:
        """A factory's error about an option is prefixed with the entry's key."""
        config = load_config(
            textwrap.dedent(
                """\
                version: 0.1
                storage: {inmemory: {}}
                middleware:
                  storage:
                    - name: tagging
                      options: {tag: t}
                    - name: redirect
                      options: {baseurl: cdn.example}
                """
            ),
            environ={},
        )
        error = self.assertRaises(
            ConfigError,
            apply_storage_middleware,
            InMemoryDriver(),
            config.middleware.storage,
            self.factories,
        )
        self.assertEqual(error.key, "middleware.storage[1].options.baseurl")
        self.assertTrue(str(error).startswith("middleware.storage[1].options.baseurl: "))
        self.assertNotIn("\n", str(error))

    def test_service_checks_paths_outermost(self) -> None:
        """The service wraps the driver in the middleware, then in the path checks."""
        config = load_config(
            "version: 0.1\nstorage: {inmemory: {}}\nhttp: {secret: s, addr: '127.0.0.1:0'}\n"
            "middleware: {storage: [{name: redirect, options: {baseurl: 'https://cdn/'}}]}\n",
            environ={},
            known_drivers=driver_factories(),
        )
        service = build_service(config)
        driver = service.site.app.registry.driver  # type: ignore[attr-defined]
        self.assertIsInstance(driver, ValidatingDriver)
        self.assertIsInstance(driver.driver, RedirectMiddleware)
        self.assertIsInstance(driver.driver.driver, InMemoryDriver)


class DiscoveryTests(SynchronousTestCase):
    """Storage middleware is found among the installed Twisted plugins, by name."""

    def test_builtin_redirect(self) -> None:
        """The built-in C{redirect} is a lazy plugin that wraps drivers."""
        factory = storage_middleware_factories()["redirect"]
        self.assertEqual(factory.name, "redirect")
        self.assertTrue(verifyObject(IStorageMiddlewareFactory, factory))
        self.assertTrue(IPlugin.providedBy(factory))
        wrapped = factory.wrap(InMemoryDriver(), {"baseurl": "https://cdn.example/"})
        self.assertIsInstance(wrapped, RedirectMiddleware)
        error = self.assertRaises(ConfigError, factory.wrap, InMemoryDriver(), {})
        self.assertEqual(error.key, "options.baseurl")

    def test_third_party_plugin_found(self) -> None:
        """Middleware shipped in another distribution's twisted/plugins is found by name."""
        directory = temporary_directory(self)
        with open(os.path.join(directory, "txregistry_test_middleware.py"), "w") as plugin:
            plugin.write(
                textwrap.dedent(
                    """
                    from txregistry.middleware.plugins import LazyStorageMiddlewareFactory

                    thirdparty = LazyStorageMiddlewareFactory(
                        "thirdparty", "txregistry.middleware.redirect", "RedirectMiddlewareFactory"
                    )
                    """
                )
            )
        self.patch(twisted.plugins, "__path__", [*twisted.plugins.__path__, directory])
        self.addCleanup(sys.modules.pop, "twisted.plugins.txregistry_test_middleware", None)
        factories = storage_middleware_factories()
        self.assertIn("thirdparty", factories)
        wrapped = factories["thirdparty"].wrap(InMemoryDriver(), {"baseurl": "http://x/"})
        self.assertIsInstance(wrapped, RedirectMiddleware)

    def test_plugin_module_stays_cheap(self) -> None:
        """Scanning the plugins imports neither the middleware nor the config's YAML."""
        code = (
            "import sys, twisted.plugins.registry_plugin\n"
            "print(sorted(m for m in ('txregistry.middleware.redirect', 'txregistry.config',"
            " 'yaml') if m in sys.modules))\n"
        )
        output = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        self.assertEqual(output.strip(), "[]")


# -- a registry process redirecting downloads ------------------------------------

CDN = "https://cdn.example/mirror"


def _redirecting(root: Path, disable: bool = False) -> dict[str, Any]:
    storage: dict[str, Any] = {"filesystem": {"rootdirectory": str(root)}}
    if disable:
        storage["redirect"] = {"disable": True}
    return {
        "storage": storage,
        "middleware": {"storage": [{"name": "redirect", "options": {"baseurl": CDN}}]},
    }


def test_blob_downloads_redirected(start_registry_with, tmp_path, repo, blob):
    """GET and HEAD of a blob answer 307 to the blob's data path below the base URL."""
    root = tmp_path / "redirecting"
    registry = start_registry_with(_redirecting(root), root=root)
    digest = registry.push(repo, blob)
    hex_part = digest.split(":")[1]
    location = f"{CDN}/docker/registry/v2/blobs/sha256/{hex_part[:2]}/{hex_part}/data"
    for method in ("GET", "HEAD"):
        response = registry.request(method, f"{repo}/blobs/{digest}")
        assert response.status == 307, (method, response.body)
        assert response.header("Location") == location, method
        assert response.header("Docker-Content-Digest") == digest, method
    # Only linked blobs are redirected: another repository's is unknown.
    response = registry.request("GET", f"{repo}-other/blobs/{digest}")
    assert response.status == 404
    # A Range request is redirected too: the client asks the base URL for the range.
    response = registry.request("GET", f"{repo}/blobs/{digest}", headers={"Range": "bytes=0-9"})
    assert (response.status, response.header("Location")) == (307, location)


def test_redirect_disabled(start_registry_with, tmp_path, repo, blob):
    """With C{storage.redirect.disable: true} the registry streams the blob itself."""
    root = tmp_path / "streaming"
    registry = start_registry_with(_redirecting(root, disable=True), root=root)
    digest = registry.push(repo, blob)
    assert digest == sha256(blob)
    response = registry.request("GET", f"{repo}/blobs/{digest}")
    assert response.status == 200
    assert response.header("Location") is None
    assert response.body == blob
    response = registry.request("HEAD", f"{repo}/blobs/{digest}")
    assert response.status == 200
    assert response.header("Content-Length") == str(len(blob))
