"""
The configuration: Distribution's YAML, REGISTRY_* overrides, every mistake
named by its key; the section modules it is made of; the listening
endpoint; the process's exit on a bad config; and the log formats the
config selects.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import os
import pkgutil
import subprocess
import sys
import textwrap
import time
from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor
from twisted.logger import Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase

import txregistry.config
from support import temporary_directory
from txregistry.cache.plugins import cache_factories
from txregistry.config import (
    DEFAULT_TLS_CIPHER_SUITES,
    EMBEDDED_DEFAULT,
    Config,
    ConfigError,
    LogConfig,
    MiddlewareConfig,
    MiddlewareEntry,
    TLSConfig,
    endpoint_description,
    load_config,
)
from txregistry.config.core import Section
from txregistry.config.health import (
    FileCheckConfig,
    HealthConfig,
    HTTPCheckConfig,
    StorageDriverCheckConfig,
    TCPCheckConfig,
)
from txregistry.config.http import DebugConfig
from txregistry.config.maintenance import GCConfig, UploadPurgingConfig
from txregistry.config.notifications import (
    EndpointConfig,
    IgnoreConfig,
    NotificationsConfig,
    OutboxConfig,
)
from txregistry.config.proxy import ProxyConfig, Remote
from txregistry.config.redis import RedisConfig, RedisPoolConfig, RedisTLSConfig
from txregistry.config.sections import SCHEMA, SECTIONS
from txregistry.configured import read_config
from txregistry.drivers.plugins import driver_factories
from txregistry.logs import log_level, observer_factory

# Debian's docker-registry package, /etc/docker/registry/config.yml, without
# its auth section (htpasswd; DEBIAN_AUTH below).
DEBIAN_CONFIG = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""

DEBIAN_AUTH = """\
auth:
  htpasswd:
    realm: basic-realm
    path: /etc/docker/registry
"""

MINIMAL = """\
version: 0.1
storage:
  inmemory: {}
"""


def load(text: str | None, **environ: str) -> Config:
    """Load C{text} with only C{environ} as the environment, and the installed plugins."""
    return load_config(
        text, environ=environ, known_drivers=driver_factories(), known_caches=cache_factories()
    )


class ConfigTestCase(SynchronousTestCase):
    def error(self, text: str | None, **environ: str) -> ConfigError:
        """The error loading C{text} raises."""
        return self.assertRaises(ConfigError, load, text, **environ)


class DocumentTests(ConfigTestCase):
    """Whole configurations that load."""

    def test_embedded_default(self) -> None:
        """The configuration used when none is given."""
        config = load(None)
        self.assertEqual(config, load(EMBEDDED_DEFAULT))
        self.assertEqual(config.storage.driver, "filesystem")
        self.assertEqual(config.storage.parameters, {"rootdirectory": "./registry-data"})
        self.assertFalse(config.storage.delete_enabled)
        self.assertEqual(config.http.addr, ":5000")
        self.assertEqual(config.http.headers, {"X-Content-Type-Options": ["nosniff"]})
        self.assertEqual((config.log.level, config.log.formatter), ("info", "text"))
        self.assertEqual(config.log.fields, {"service": "registry"})
        self.assertEqual(config.warnings, ())

    def test_debian_default(self) -> None:
        """Distribution's default config, as Debian ships it, loads, its health check too."""
        config = load(DEBIAN_CONFIG)
        self.assertEqual(config.storage.driver, "filesystem")
        self.assertEqual(config.storage.parameters, {"rootdirectory": "/var/lib/docker-registry"})
        self.assertTrue(config.storage.delete_enabled)
        self.assertEqual(config.http.addr, ":5000")
        self.assertEqual(config.http.headers, {"X-Content-Type-Options": ["nosniff"]})
        self.assertEqual(config.log.fields, {"service": "registry"})
        self.assertEqual(config.warnings, ())
        self.assertEqual(
            config.health.storagedriver, StorageDriverCheckConfig(True, 10.0, threshold=3)
        )

    def test_debian_default_with_auth(self) -> None:
        """With its htpasswd section, the same config names the htpasswd controller."""
        config = load(DEBIAN_CONFIG + DEBIAN_AUTH)
        assert config.auth is not None
        self.assertEqual(config.auth.name, "htpasswd")
        self.assertEqual(
            config.auth.options, {"realm": "basic-realm", "path": "/etc/docker/registry"}
        )

    def test_auth_mistakes(self) -> None:
        """One controller, with a mapping of options (or none); anything else names the key."""
        self.assertIsNone(load(MINIMAL).auth)
        self.assertIsNone(load(MINIMAL + "auth: {}\n").auth)
        config = load(MINIMAL + "auth:\n  silly:\n")
        self.assertEqual((config.auth.name, config.auth.options), ("silly", {}))  # type: ignore[union-attr]
        for extra, key in [
            ("auth: {silly: {}, htpasswd: {}}\n", "auth"),
            ("auth: {silly: [realm]}\n", "auth.silly"),
            ("auth: silly\n", "auth"),
        ]:
            self.assertEqual(self.error(MINIMAL + extra).key, key, extra)

    def test_minimal(self) -> None:
        """A version and a driver are all it takes; the rest has Distribution's defaults."""
        config = load(MINIMAL)
        self.assertEqual((config.storage.driver, config.storage.parameters), ("inmemory", {}))
        self.assertEqual(config.http.addr, ":5000")
        self.assertEqual(config.http.prefix, "/")
        self.assertEqual(config.catalog_max_entries, 1000)
        # Ours: Distribution's server has no connection timeouts.
        http = config.http
        timeouts = (http.idle_timeout, http.read_header_timeout, http.body_timeout)
        self.assertEqual(timeouts, (60.0, 20.0, 60.0))

    def test_driver_without_parameters(self) -> None:
        """A driver named with no parameters at all (YAML null) has none."""
        config = load("version: 0.1\nstorage:\n  inmemory:\n")
        self.assertEqual(config.storage.parameters, {})

    def test_scalars_read_as_strings(self) -> None:
        """As Go's YAML decoder does, a number given for a string key is its text."""
        config = load(MINIMAL + "http: {secret: 12345, host: https://r.example}\n")
        self.assertEqual(config.http.secret, "12345")
        config = load(MINIMAL, REGISTRY_HTTP_SECRET="12345")
        self.assertEqual(config.http.secret, "12345")
        self.assertEqual(self.error(MINIMAL + "http: {addr: 5000}\n").key, "http.addr")

    def test_version_as_string(self) -> None:
        """C{version} may be quoted."""
        self.assertEqual(
            load('version: "0.1"\nstorage: {inmemory: {}}\n').storage.driver, "inmemory"
        )

    def test_sections(self) -> None:
        """Values of the supported sections reach the typed config."""
        config = load(
            MINIMAL
            + textwrap.dedent(
                """\
                log:
                  level: DEBUG
                  formatter: json
                  accesslog: {disabled: true}
                http:
                  addr: 127.0.0.1:5001
                  prefix: /registry
                  host: https://registry.example/
                  secret: s3cret
                  relativeurls: true
                  draintimeout: 1m30s
                  idletimeout: 2m
                  readheadertimeout: 5s
                  bodytimeout: 0
                  headers: {X-One: single}
                catalog: {maxentries: 10}
                """
            )
        )
        self.assertEqual((config.log.level, config.log.formatter), ("debug", "json"))
        self.assertTrue(config.log.accesslog_disabled)
        self.assertEqual(config.http.prefix, "/registry/")
        self.assertEqual(config.http.host, "https://registry.example")
        self.assertEqual(config.http.secret, "s3cret")
        self.assertTrue(config.http.relative_urls)
        self.assertEqual(config.http.drain_timeout, 90.0)
        self.assertEqual(config.http.idle_timeout, 120.0)
        self.assertEqual(config.http.read_header_timeout, 5.0)
        self.assertIsNone(config.http.body_timeout)  # 0: disabled
        self.assertEqual(config.http.headers, {"X-One": ["single"]})
        self.assertEqual(config.catalog_max_entries, 10)


class MiddlewareSectionTests(ConfigTestCase):
    """C{middleware.storage} becomes typed entries; the plugins check names and options."""

    def test_storage_entries(self) -> None:
        """Entries keep their order, name, options and key; options may be absent."""
        config = load(
            MINIMAL
            + textwrap.dedent(
                """\
                middleware:
                  storage:
                    - name: redirect
                      options:
                        baseurl: https://example.com/
                    - name: other
                    - name: spare
                      disabled: true
                      options:
                """
            )
        )
        self.assertEqual(
            config.middleware.storage,
            (
                MiddlewareEntry(
                    "middleware.storage[0]", "redirect", {"baseurl": "https://example.com/"}
                ),
                MiddlewareEntry("middleware.storage[1]", "other", {}),
                MiddlewareEntry("middleware.storage[2]", "spare", {}, disabled=True),
            ),
        )

    def test_none(self) -> None:
        """Without the section, or with an empty list, there is no middleware."""
        for extra in ("", "middleware: {}\n", "middleware: {storage: []}\n", "middleware:\n"):
            self.assertEqual(load(MINIMAL + extra).middleware, MiddlewareConfig(), extra)

    def test_environment(self) -> None:
        """C{REGISTRY_MIDDLEWARE_STORAGE} sets the whole list, read as YAML."""
        config = load(
            MINIMAL,
            REGISTRY_MIDDLEWARE_STORAGE="[{name: redirect, options: {baseurl: 'http://a/'}}]",
        )
        self.assertEqual(
            config.middleware.storage,
            (MiddlewareEntry("middleware.storage[0]", "redirect", {"baseurl": "http://a/"}),),
        )
        error = self.error(MINIMAL, REGISTRY_MIDDLEWARE_STORAGE_NAME="redirect")
        self.assertEqual(error.key, "REGISTRY_MIDDLEWARE_STORAGE_NAME")
        error = self.error(MINIMAL, REGISTRY_MIDDLEWARE_REGISTRY="[{name: x}]")
        self.assertEqual(error.key, "middleware.registry")


class EnvironmentTests(ConfigTestCase):
    """C{REGISTRY_*} variables override the file, as for Distribution."""

    def test_overrides(self) -> None:
        """Variables set keys at any depth, their values read as YAML."""
        config = load(
            DEBIAN_CONFIG,
            REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="/srv/registry",
            REGISTRY_HTTP_ADDR="127.0.0.1:6000",
            REGISTRY_STORAGE_DELETE_ENABLED="false",
            REGISTRY_LOG_LEVEL="debug",
        )
        self.assertEqual(config.storage.parameters, {"rootdirectory": "/srv/registry"})
        self.assertEqual(config.http.addr, "127.0.0.1:6000")
        self.assertIs(config.storage.delete_enabled, False)
        self.assertEqual(config.log.level, "debug")

    def test_boolean_parsed_as_yaml(self) -> None:
        """C{true} is a YAML boolean, not the string C{"true"}."""
        config = load(MINIMAL, REGISTRY_STORAGE_DELETE_ENABLED="true")
        self.assertIs(config.storage.delete_enabled, True)
        error = self.error(MINIMAL, REGISTRY_STORAGE_DELETE_ENABLED="sometimes")
        self.assertEqual(error.key, "storage.delete.enabled")

    def test_creates_sections(self) -> None:
        """A variable may set a key whose section the file does not have."""
        config = load(MINIMAL, REGISTRY_HTTP_SECRET="from-env", REGISTRY_LOG_FIELDS_ENV="staging")
        self.assertEqual(config.http.secret, "from-env")
        self.assertEqual(config.log.fields, {"env": "staging"})

    def test_case_insensitive(self) -> None:
        """Below C{REGISTRY_}, the name is matched without regard to case."""
        config = load(MINIMAL, REGISTRY_Log_Level="warn")
        self.assertEqual(config.log.level, "warn")

    def test_other_variables_ignored(self) -> None:
        """Variables outside C{REGISTRY_*}, and the configuration path, are not overrides."""
        config = load(
            MINIMAL,
            PATH="/usr/bin",
            HTTP_ADDR="x",
            REGISTRY_CONFIGURATION_PATH="/etc/docker/registry/config.yml",
        )
        self.assertEqual(config, load(MINIMAL))

    def test_unknown_variable(self) -> None:
        """A variable that matches no key is named."""
        for variable in ("REGISTRY_BOGUS", "REGISTRY_HTTP_BOGUS", "REGISTRY_HTTP__ADDR"):
            error = self.error(MINIMAL, **{variable: "1"})
            self.assertEqual(error.key, variable)

    def test_invalid_yaml_value(self) -> None:
        """A value that is not YAML is named by its variable."""
        error = self.error(MINIMAL, REGISTRY_HTTP_ADDR="[unclosed")
        self.assertEqual(error.key, "REGISTRY_HTTP_ADDR")
        self.assertIn("YAML", error.problem)

    def test_unloadable_yaml_value(self) -> None:
        """
        A value PyYAML parses but cannot build, or nests past Python's
        recursion, is named by its variable (each was a traceback).
        """
        for value in (
            "2001-13-45",
            "!!int x",
            "!!float x",
            "!!bool x",
            "!!timestamp x",
            "1" * 5000,
            "[" * 5000 + "]" * 5000,
        ):
            error = self.error(MINIMAL, REGISTRY_HTTP_ADDR=value)
            self.assertEqual(error.key, "REGISTRY_HTTP_ADDR", value[:20])
            self.assertIn("YAML", error.problem)

    def test_override_refused_section(self) -> None:
        """Overrides are checked like the file: a refused key is refused, saying why."""
        error = self.error(MINIMAL, REGISTRY_HTTP_TLS_LETSENCRYPT_CACHEFILE="/le")
        self.assertEqual(error.key, "http.tls.letsencrypt")
        self.assertIn("not supported", error.problem)

    def test_override_auth(self) -> None:
        """C{REGISTRY_AUTH_<CONTROLLER>_<OPTION>} sets a controller's option."""
        config = load(MINIMAL, REGISTRY_AUTH_HTPASSWD_PATH="/etc/htpasswd")
        assert config.auth is not None
        self.assertEqual(
            (config.auth.name, config.auth.options), ("htpasswd", {"path": "/etc/htpasswd"})
        )

    def test_override_ignored_section(self) -> None:
        """
        Overrides below an ignored section warn as in the file, rather than
        stopping start-up (Distribution deployments often set these).
        """
        config = load(
            MINIMAL,
            REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED="false",
            REGISTRY_LOG_HOOKS="[]",
        )
        self.assertEqual([warning.split(":")[0] for warning in config.warnings], ["log.hooks"])
        # Upload purging is implemented: the override turns it off.
        self.assertFalse(config.storage.upload_purging.enabled)


class EmptyValueTests(ConfigTestCase):
    """A key set to nothing (C{key:} in YAML) takes its default, as in Distribution."""

    def test_empty_numbers(self) -> None:
        config = load(
            "version: 0.1\nstorage:\n  inmemory:\n  cache:\n    blobdescriptorsize:\n"
            "catalog:\n  maxentries:\n"
        )
        self.assertEqual(config.catalog_max_entries, 1000)
        self.assertEqual(config.storage.blob_descriptor_cache_size, 10000)

    def test_empty_address(self) -> None:
        """C{http.addr} set to nothing listens where it would when unset (was a TypeError)."""
        config = load(MINIMAL + "http:\n  addr:\n")
        self.assertEqual((config.http.addr, config.http.endpoint), (":5000", "tcp:5000"))


class MaintenanceTests(ConfigTestCase):
    """C{storage.maintenance.uploadpurging} (Distribution's) and C{storage.gc} (ours)."""

    def test_defaults(self) -> None:
        """Purging is on by default, as in Distribution, with its defaults; collection is off."""
        storage = load(MINIMAL).storage
        self.assertEqual(
            storage.upload_purging, UploadPurgingConfig(True, 168 * 3600.0, 24 * 3600.0, False)
        )
        self.assertEqual(storage.gc, GCConfig(False, 24 * 3600.0, 3600.0, False, False))

    def test_values(self) -> None:
        storage = load(
            "version: 0.1\nstorage:\n  inmemory: {}\n  maintenance:\n    uploadpurging:\n"
            "      enabled: false\n      age: 2h\n      interval: 30m\n      dryrun: true\n"
            "  gc: {enabled: true, interval: 10m, minage: 0s, deleteuntagged: true, dryrun: true}\n"
        ).storage
        self.assertEqual(storage.upload_purging, UploadPurgingConfig(False, 7200.0, 1800.0, True))
        self.assertEqual(storage.gc, GCConfig(True, 600.0, 0.0, True, True))

    def test_overrides(self) -> None:
        config = load(MINIMAL, REGISTRY_STORAGE_GC_ENABLED="true", REGISTRY_STORAGE_GC_MINAGE="5s")
        self.assertEqual((config.storage.gc.enabled, config.storage.gc.min_age), (True, 5.0))

    def test_mistakes(self) -> None:
        """Each mistake names its key."""
        for section, key in [
            ("gc: {bogus: 1}", "storage.gc.bogus"),
            ("gc: {enabled: 1}", "storage.gc.enabled"),
            ("gc: {interval: soon}", "storage.gc.interval"),
            ("gc: {interval: 0s}", "storage.gc.interval"),
            ("gc: {minage: 5}", None),
            ("maintenance: {uploadpurging: {age: 1y}}", "storage.maintenance.uploadpurging.age"),
            (
                "maintenance: {uploadpurging: {interval: 0s}}",
                "storage.maintenance.uploadpurging.interval",
            ),
            (
                "maintenance: {uploadpurging: {bogus: true}}",
                "storage.maintenance.uploadpurging.bogus",
            ),
        ]:
            text = f"version: 0.1\nstorage: {{inmemory: {{}}, {section}}}\n"
            if key is None:
                # A number is nanoseconds, as for Go.
                self.assertEqual(load(text).storage.gc.min_age, 5e-9)
                continue
            self.assertEqual(self.error(text).key, key, section)


class MistakeTests(ConfigTestCase):
    """Every mistake is a L{ConfigError} naming the key at fault."""

    def test_unknown_keys(self) -> None:
        """An unknown key is named by its dotted path, at any depth."""
        for extra, key in [
            ("bogus: 1\n", "bogus"),
            ("http: {bogus: 1}\n", "http.bogus"),
            ("http: {http2: {bogus: 1}}\n", "http.http2.bogus"),
            ("log: {accesslog: {bogus: 1}}\n", "log.accesslog.bogus"),
            ("catalog: {maxentrie: 5}\n", "catalog.maxentrie"),
        ]:
            error = self.error(MINIMAL + extra)
            self.assertEqual((error.key, error.problem), (key, "unknown key"), extra)
        for options, key in [
            ("delete: {bogus: 1}", "storage.delete.bogus"),
            ("maintenance: {readonly: {bogus: 1}}", "storage.maintenance.readonly.bogus"),
            ("cache: {blobdescriptor: inmemory, bogus: 1}", "storage.cache.bogus"),
        ]:
            error = self.error(f"version: 0.1\nstorage: {{inmemory: {{}}, {options}}}\n")
            self.assertEqual((error.key, error.problem), (key, "unknown key"), options)

    def test_wrong_types(self) -> None:
        """A value of the wrong type is named with the type it must have."""
        for extra, key in [
            ("http: {addr: 5000}\n", "http.addr"),
            ("http: {relativeurls: maybe}\n", "http.relativeurls"),
            ("http: {draintimeout: soon}\n", "http.draintimeout"),
            ("http: {readheadertimeout: soon}\n", "http.readheadertimeout"),
            ("http: {headers: [X-One]}\n", "http.headers"),
            ("http: {headers: {X-One: [1, 2]}}\n", "http.headers.X-One"),
            ("http: []\n", "http"),
            ("log: {fields: [a, b]}\n", "log.fields"),
            ("log: {level: 3}\n", "log.level"),
            ("catalog: {maxentries: many}\n", "catalog.maxentries"),
            ("catalog: {maxentries: true}\n", "catalog.maxentries"),
            ("catalog: {maxentries: 0}\n", "catalog.maxentries"),
        ]:
            error = self.error(MINIMAL + extra)
            self.assertEqual(error.key, key, extra)
        error = self.error("version: 0.1\nstorage:\n  inmemory: [a]\n")
        self.assertEqual(error.key, "storage.inmemory")

    def test_bad_values(self) -> None:
        """Values of the right type that mean nothing are named too."""
        for extra, key in [
            ("log: {level: loud}\n", "log.level"),
            ("log: {formatter: xml}\n", "log.formatter"),
            ("http: {net: udp}\n", "http.net"),
            ("http: {prefix: registry}\n", "http.prefix"),
            ("http: {host: registry.example}\n", "http.host"),
        ]:
            error = self.error(MINIMAL + extra)
            self.assertEqual(error.key, key, extra)

    def test_drivers(self) -> None:
        """Exactly one installed driver must be named."""
        error = self.error("version: 0.1\nstorage:\n  gcs: {bucket: b}\n")
        self.assertEqual(error.key, "storage.gcs")
        for installed in ("filesystem", "inmemory", "s3"):
            self.assertIn(installed, error.problem)
        error = self.error("version: 0.1\nstorage:\n  inmemory: {}\n  filesystem: {}\n")
        self.assertEqual(error.key, "storage")
        self.assertIn("more than one", error.problem)
        for text in (
            "version: 0.1\nstorage:\n  delete: {enabled: true}\n",
            "version: 0.1\n",
        ):
            error = self.error(text)
            self.assertEqual(error.key, "storage")
            self.assertIn("no storage driver", error.problem)

    def test_version(self) -> None:
        """Only Distribution's version 0.1 is understood."""
        for text in ("version: 0.2\n", "version: '1'\n", "version: [0.1]\n", ""):
            error = self.error(text + "storage: {inmemory: {}}\n")
            self.assertEqual(error.key, "version", text)

    def test_not_a_mapping(self) -> None:
        """An empty document lacks a version; one that is not a mapping is refused."""
        self.assertEqual(self.error("").key, "version")
        self.assertEqual(self.error("- a\n- b\n").key, "configuration")

    def test_unsupported_sections_refused(self) -> None:
        """Sections whose absence would weaken security or lose data stop start-up."""
        for extra, key in [
            ("proxy: {exec: {command: helper}}\n", "proxy.exec"),
            ("http: {tls: {letsencrypt: {cachefile: /le}}}\n", "http.tls.letsencrypt"),
            ("middleware: {registry: [{name: x}]}\n", "middleware.registry"),
            ("middleware: {repository: [{name: x}]}\n", "middleware.repository"),
        ]:
            error = self.error(MINIMAL + extra)
            self.assertEqual(error.key, key, extra)
            self.assertIn("not supported", error.problem)

    def test_storage_middleware_mistakes(self) -> None:
        """The shape of every C{middleware.storage} entry is checked, naming the key."""
        for extra, key in [
            ("middleware: {storage: {name: redirect}}\n", "middleware.storage"),
            ("middleware: {bogus: []}\n", "middleware.bogus"),
            ("middleware: {storage: [redirect]}\n", "middleware.storage[0]"),
            ("middleware: {storage: [{options: {}}]}\n", "middleware.storage[0].name"),
            ("middleware: {storage: [{name: a}, {name: ''}]}\n", "middleware.storage[1].name"),
            ("middleware: {storage: [{name: [a]}]}\n", "middleware.storage[0].name"),
            ("middleware: {storage: [{name: a, options: [b]}]}\n", "middleware.storage[0].options"),
            (
                "middleware: {storage: [{name: a, options: {1: b}}]}\n",
                "middleware.storage[0].options.1",
            ),
            (
                "middleware: {storage: [{name: a, disabled: no way}]}\n",
                "middleware.storage[0].disabled",
            ),
            ("middleware: {storage: [{name: a, bogus: 1}]}\n", "middleware.storage[0].bogus"),
        ]:
            error = self.error(MINIMAL + extra)
            self.assertEqual(error.key, key, extra)
            self.assertNotIn("\n", str(error))

    def test_ignored_sections_warn(self) -> None:
        """Sections that only forgo a convenience are accepted with a warning each."""
        config = load(MINIMAL + "log: {hooks: []}\n")
        self.assertEqual([warning.split(":")[0] for warning in config.warnings], ["log.hooks"])

    def test_invalid_yaml_names_line(self) -> None:
        """YAML that does not parse is named, with the line and column at fault."""
        error = self.assertRaises(
            ConfigError,
            load_config,
            "version: 0.1\nstorage:\n  inmemory: {}\nhttp:\n  addr: [oops\n  x: y\n",
            environ={},
            source="/etc/registry.yml",
        )
        self.assertEqual(error.key, "/etc/registry.yml")
        self.assertIn("is not valid YAML at line 6, column 4", error.problem)
        error = self.error("version: 0.1\n\tstorage: x\n")
        self.assertIn("line 2", error.problem)

    def test_unloadable_yaml(self) -> None:
        """
        A file PyYAML parses but cannot build a value of, or that nests past
        Python's recursion, is named (each was a traceback).
        """
        for text in (
            MINIMAL + "http: {secret: 2001-13-45}\n",
            MINIMAL + "http: {secret: !!int x}\n",
            MINIMAL + "catalog: {maxentries: " + "1" * 5000 + "}\n",
            MINIMAL + "log: {fields: " + "[" * 5000 + "]" * 5000 + "}\n",
        ):
            error = self.error(text)
            self.assertEqual(error.key, "configuration", text[-40:])
            self.assertIn("is not valid YAML", error.problem)

    def test_durations_out_of_range(self) -> None:
        """
        A duration longer than Go's can be (292 years) is named: as an
        integer past 10**308 it was an OverflowError; as text, infinity.
        """
        for value in ("1" + "0" * 400, str(2**63), "9" * 400 + "h", "2562048h"):
            error = self.error(MINIMAL + f"http: {{draintimeout: {value}}}\n")
            self.assertEqual(error.key, "http.draintimeout", value[:20])
        config = load(MINIMAL + "http: {draintimeout: 2562047h}\n")
        self.assertEqual(config.http.drain_timeout, 2562047 * 3600.0)

    def test_url_patterns_that_do_not_compile(self) -> None:
        """
        A foreign layer URL pattern C{re} cannot compile is named, whatever
        C{re} raises (an OverflowError, a RecursionError, were tracebacks).
        """
        for pattern in ("a{4294967296}", "(" * 2000 + ")" * 2000, "("):
            error = self.error(
                MINIMAL + f"validation: {{manifests: {{urls: {{deny: ['x', '{pattern}']}}}}}}\n"
            )
            self.assertEqual(error.key, "validation.manifests.urls.deny[1]", pattern[:20])


class HealthSectionTests(ConfigTestCase):
    """The C{health} section: Distribution's checks and defaults."""

    def test_absent(self) -> None:
        """Without the section, no check runs."""
        config = load(MINIMAL)
        self.assertEqual(config.health, HealthConfig())
        self.assertFalse(config.health.enabled)

    def test_defaults(self) -> None:
        """Distribution's defaults: 10 s, one failure, status 200; timeout: the interval."""
        config = load(
            MINIMAL
            + "health:\n"
            + "  storagedriver: {enabled: true}\n"
            + "  file: [{file: /tmp/down}]\n"
            + "  http: [{uri: 'http://127.0.0.1:8080/ping'}]\n"
            + "  tcp: [{addr: '127.0.0.1:6379', interval: 2s}]\n"
        )
        health = config.health
        self.assertTrue(health.enabled)
        self.assertEqual(health.storagedriver, StorageDriverCheckConfig(True, 10.0, 1))
        self.assertEqual(health.files, (FileCheckConfig("/tmp/down", 10.0),))
        self.assertEqual(
            health.http, (HTTPCheckConfig("http://127.0.0.1:8080/ping", {}, 200, 10.0, 10.0, 1),)
        )
        self.assertEqual(
            health.tcp, (TCPCheckConfig("127.0.0.1:6379", "127.0.0.1", 6379, 2.0, 2.0, 1),)
        )

    def test_every_key(self) -> None:
        """Every key of every check, zero values taking the defaults as in Distribution."""
        config = load(
            MINIMAL
            + "health:\n"
            + "  storagedriver: {enabled: true, interval: 250ms, threshold: 3}\n"
            + "  file: [{file: down, interval: 0}]\n"
            + "  http:\n"
            + "    - uri: https://example.com/health\n"
            + "      headers: {Authorization: [Basic abc], X-One: single}\n"
            + "      statuscode: 204\n"
            + "      timeout: 3s\n"
            + "      interval: 1m\n"
            + "      threshold: 0\n"
            + "  tcp: [{addr: '[::1]:5432', timeout: 500ms, threshold: 2}]\n"
        )
        health = config.health
        self.assertEqual(health.storagedriver, StorageDriverCheckConfig(True, 0.25, 3))
        self.assertEqual(health.files, (FileCheckConfig("down", 10.0),))
        self.assertEqual(
            health.http,
            (
                HTTPCheckConfig(
                    "https://example.com/health",
                    {"Authorization": ("Basic abc",), "X-One": ("single",)},
                    204,
                    3.0,
                    60.0,
                    1,
                ),
            ),
        )
        self.assertEqual(health.tcp, (TCPCheckConfig("[::1]:5432", "::1", 5432, 0.5, 10.0, 2),))

    def test_disabled_storage_driver(self) -> None:
        """A storage driver check that is not enabled is no check."""
        config = load(MINIMAL + "health: {storagedriver: {enabled: false, interval: 1s}}\n")
        self.assertFalse(config.health.enabled)

    def test_environment(self) -> None:
        """C{REGISTRY_HEALTH_*} overrides go through the shared machinery."""
        config = load(
            MINIMAL,
            REGISTRY_HEALTH_STORAGEDRIVER_ENABLED="true",
            REGISTRY_HEALTH_STORAGEDRIVER_INTERVAL="200ms",
            REGISTRY_HEALTH_STORAGEDRIVER_THRESHOLD="2",
            REGISTRY_HEALTH_TCP="[{addr: 'localhost:80'}]",
        )
        self.assertEqual(config.health.storagedriver, StorageDriverCheckConfig(True, 0.2, 2))
        self.assertEqual([check.addr for check in config.health.tcp], ["localhost:80"])
        error = self.error(MINIMAL, REGISTRY_HEALTH_STORAGEDRIVER_BOGUS="1")
        self.assertEqual(error.key, "REGISTRY_HEALTH_STORAGEDRIVER_BOGUS")

    def test_mistakes(self) -> None:
        """Every mistake is refused, naming its dotted key."""
        for extra, key in [
            ("health: {bogus: 1}", "health.bogus"),
            ("health: [1]", "health"),
            ("health: {storagedriver: {bogus: 1}}", "health.storagedriver.bogus"),
            ("health: {storagedriver: {enabled: yes please}}", "health.storagedriver.enabled"),
            ("health: {storagedriver: {interval: -5}}", "health.storagedriver.interval"),
            ("health: {storagedriver: {interval: -5s}}", "health.storagedriver.interval"),
            ("health: {storagedriver: {interval: soon}}", "health.storagedriver.interval"),
            ("health: {storagedriver: {threshold: -1}}", "health.storagedriver.threshold"),
            ("health: {storagedriver: {threshold: 1.5}}", "health.storagedriver.threshold"),
            ("health: {file: /tmp/x}", "health.file"),
            ("health: {file: [/tmp/x]}", "health.file[0]"),
            ("health: {file: [{interval: 1s}]}", "health.file[0].file"),
            ("health: {file: [{file: x, threshold: 2}]}", "health.file[0].threshold"),
            ("health: {file: [{file: x, interval: -1}]}", "health.file[0].interval"),
            ("health: {http: [{}]}", "health.http[0].uri"),
            ("health: {http: [{uri: 'ftp://x/'}]}", "health.http[0].uri"),
            ("health: {http: [{uri: 'not a uri'}]}", "health.http[0].uri"),
            ("health: {http: [{uri: 'http://x:99999/'}]}", "health.http[0].uri"),
            ("health: {http: [{uri: 'http://x/', bogus: 1}]}", "health.http[0].bogus"),
            ("health: {http: [{uri: 'http://x/', statuscode: 99}]}", "health.http[0].statuscode"),
            ("health: {http: [{uri: 'http://x/', statuscode: 600}]}", "health.http[0].statuscode"),
            ("health: {http: [{uri: 'http://x/', timeout: -1}]}", "health.http[0].timeout"),
            ("health: {http: [{uri: 'http://x/', threshold: -2}]}", "health.http[0].threshold"),
            ("health: {http: [{uri: 'http://x/', headers: [a]}]}", "health.http[0].headers"),
            ("health: {http: [{uri: 'http://x/', headers: {A: [1]}}]}", "health.http[0].headers.A"),
            ("health: {tcp: [{}]}", "health.tcp[0].addr"),
            ("health: {tcp: [{addr: localhost}]}", "health.tcp[0].addr"),
            ("health: {tcp: [{addr: 'localhost:'}]}", "health.tcp[0].addr"),
            ("health: {tcp: [{addr: 'localhost:0'}]}", "health.tcp[0].addr"),
            ("health: {tcp: [{addr: 'localhost:70000'}]}", "health.tcp[0].addr"),
            # More digits than int() reads (was a ValueError).
            ("health: {tcp: [{addr: 'a:" + "0" * 4301 + "'}]}", "health.tcp[0].addr"),
            ("health: {tcp: [{addr: '::1:80'}]}", "health.tcp[0].addr"),
            ("health: {tcp: [{addr: 'a:1', interval: -3}]}", "health.tcp[0].interval"),
            ("health: {tcp: [{addr: 'a:1'}, {addr: 'a:1'}]}", "health.tcp[1].addr"),
            (
                "health: {http: [{uri: 'http://x/'}], file: [{file: 'http://x/'}]}",
                "health.http[0].uri",
            ),
        ]:
            error = self.error(MINIMAL + extra + "\n")
            self.assertEqual(error.key, key, extra)
            self.assertNotIn("\n", str(error))


class NotificationsSectionTests(ConfigTestCase):
    """
    C{notifications}: Distribution's endpoints and events, with its defaults,
    and txregistry's C{sink}, C{options} and C{outbox}.
    """

    def test_distribution_example(self) -> None:
        """Distribution's documented example becomes the typed section, key by key."""
        config = load(
            MINIMAL
            + textwrap.dedent(
                """\
                notifications:
                  events:
                    includereferences: true
                  endpoints:
                    - name: alistener
                      disabled: false
                      url: https://my.listener.com/event
                      headers:
                        Authorization: ["Bearer <your token, if needed>"]
                        X-Several: [one, two]
                      timeout: 500ms
                      threshold: 5
                      backoff: 2s
                      ignoredmediatypes:
                        - application/octet-stream
                      ignore:
                        mediatypes:
                           - application/vnd.oci.image.index.v1+json
                        actions:
                           - pull
                           - mount
                """
            )
        )
        self.assertEqual(
            config.notifications,
            NotificationsConfig(
                endpoints=(
                    EndpointConfig(
                        name="alistener",
                        url="https://my.listener.com/event",
                        disabled=False,
                        headers={
                            "Authorization": ("Bearer <your token, if needed>",),
                            "X-Several": ("one", "two"),
                        },
                        timeout=0.5,
                        threshold=5,
                        backoff=2.0,
                        ignored_media_types=("application/octet-stream",),
                        ignore=IgnoreConfig(
                            media_types=("application/vnd.oci.image.index.v1+json",),
                            actions=("pull", "mount"),
                        ),
                    ),
                ),
                include_references=True,
            ),
        )
        self.assertEqual(config.warnings, ())

    def test_txregistry_keys(self) -> None:
        """C{sink}, C{options} and C{outbox} are read; a header may be one string."""
        config = load(
            MINIMAL
            + textwrap.dedent(
                """\
                notifications:
                  endpoints:
                    - name: queue.1
                      url: http://127.0.0.1:8080/
                      sink: amqp
                      options: {exchange: registry, durable: true}
                      headers: {X-One: single}
                  outbox:
                    path: /var/spool/registry-events
                    maxbytes: 4096
                """
            )
        )
        self.assertEqual(
            config.notifications,
            NotificationsConfig(
                endpoints=(
                    EndpointConfig(
                        name="queue.1",
                        url="http://127.0.0.1:8080/",
                        headers={"X-One": ("single",)},
                        sink="amqp",
                        options={"exchange": "registry", "durable": True},
                    ),
                ),
                outbox=OutboxConfig(path="/var/spool/registry-events", max_bytes=4096),
            ),
        )

    def test_absent(self) -> None:
        """Without the section, or with nothing in it, there are no endpoints."""
        for extra in (
            "",
            "notifications:\n",
            "notifications: {}\n",
            "notifications: {endpoints: []}\n",
            "notifications: {endpoints: , events: , outbox: }\n",
        ):
            notifications = load(MINIMAL + extra).notifications
            self.assertEqual(notifications, NotificationsConfig(), extra)
            self.assertEqual(
                (notifications.include_references, notifications.outbox),
                (False, OutboxConfig(None, 1024 * 1024 * 1024)),
            )

    def test_endpoint_defaults(self) -> None:
        """An endpoint with only a name and a URL has Distribution's defaults, and ours."""
        (endpoint,) = load(
            MINIMAL + "notifications: {endpoints: [{name: a, url: 'http://h/'}]}\n"
        ).notifications.endpoints
        self.assertEqual(
            endpoint,
            EndpointConfig(
                "a", "http://h/", False, {}, 1.0, 10, 1.0, (), IgnoreConfig((), ()), "webhook", {}
            ),
        )

    def test_url_only_for_webhook(self) -> None:
        """
        An endpoint whose sink is not the webhook needs no URL (the webhook
        does: see test_mistakes); one given is still checked.
        """
        (endpoint,) = load(
            MINIMAL + "notifications: {endpoints: [{name: a, sink: sqlite}]}\n"
        ).notifications.endpoints
        self.assertEqual((endpoint.sink, endpoint.url), ("sqlite", ""))
        error = self.assertRaises(
            ConfigError,
            load,
            MINIMAL + "notifications: {endpoints: [{name: a, sink: sqlite, url: 'ftp://h/'}]}\n",
        )
        self.assertEqual(error.key, "notifications.endpoints[0].url")
        error = self.assertRaises(
            ConfigError, load, MINIMAL + "notifications: {endpoints: [{name: a, sink: webhook}]}\n"
        )
        self.assertEqual(error.key, "notifications.endpoints[0].url")

    def test_non_positive_take_defaults(self) -> None:
        """As in Distribution, a zero or negative timeout, threshold or backoff is the default."""
        for settings in (
            "timeout: 0s, threshold: 0, backoff: 0s",
            "timeout: 0, threshold: -3, backoff: -1000",
            "timeout: , threshold: , backoff: ",
        ):
            (endpoint,) = load(
                MINIMAL
                + f"notifications: {{endpoints: [{{name: a, url: 'http://h/', {settings}}}]}}\n"
            ).notifications.endpoints
            self.assertEqual(
                (endpoint.timeout, endpoint.threshold, endpoint.backoff), (1.0, 10, 1.0), settings
            )
        (endpoint,) = load(
            MINIMAL
            + "notifications: {endpoints: [{name: a, url: 'http://h/', timeout: 2000000000,"
            + " threshold: 1, backoff: 1m30s}]}\n"
        ).notifications.endpoints
        self.assertEqual((endpoint.timeout, endpoint.threshold, endpoint.backoff), (2.0, 1, 90.0))

    def test_enabled_endpoints(self) -> None:
        """C{enabled_endpoints} leaves out the disabled ones, keeping the order."""
        notifications = load(
            MINIMAL
            + textwrap.dedent(
                """\
                notifications:
                  endpoints:
                    - {name: a, url: 'http://h/a'}
                    - {name: b, url: 'http://h/b', disabled: true}
                    - {name: c, url: 'http://h/c', disabled: false}
                """
            )
        ).notifications
        self.assertEqual([endpoint.name for endpoint in notifications.endpoints], ["a", "b", "c"])
        self.assertEqual(
            [endpoint.name for endpoint in notifications.enabled_endpoints()], ["a", "c"]
        )
        self.assertEqual(NotificationsConfig().enabled_endpoints(), ())

    def test_environment(self) -> None:
        """C{REGISTRY_NOTIFICATIONS_*} sets the section's keys, read as YAML."""
        notifications = load(
            MINIMAL,
            REGISTRY_NOTIFICATIONS_EVENTS_INCLUDEREFERENCES="true",
            REGISTRY_NOTIFICATIONS_OUTBOX_PATH="/x",
            REGISTRY_NOTIFICATIONS_OUTBOX_MAXBYTES="5",
            REGISTRY_NOTIFICATIONS_ENDPOINTS="[{name: a, url: 'https://h/', threshold: 3}]",
        ).notifications
        self.assertEqual(
            notifications,
            NotificationsConfig(
                endpoints=(EndpointConfig("a", "https://h/", threshold=3),),
                include_references=True,
                outbox=OutboxConfig("/x", 5),
            ),
        )
        # An override replaces the file's value.
        notifications = load(
            MINIMAL + "notifications: {events: {includereferences: true}, outbox: {path: /y}}\n",
            REGISTRY_NOTIFICATIONS_EVENTS_INCLUDEREFERENCES="false",
            REGISTRY_NOTIFICATIONS_OUTBOX_PATH="/x",
        ).notifications
        self.assertEqual(
            (notifications.include_references, notifications.outbox.path), (False, "/x")
        )

    def test_environment_mistakes(self) -> None:
        """Overrides are checked like the file, each mistake named."""
        for variable, value, key in [
            ("REGISTRY_NOTIFICATIONS_EVENTS_BOGUS", "1", "REGISTRY_NOTIFICATIONS_EVENTS_BOGUS"),
            ("REGISTRY_NOTIFICATIONS_OUTBOX_BOGUS", "1", "REGISTRY_NOTIFICATIONS_OUTBOX_BOGUS"),
            ("REGISTRY_NOTIFICATIONS_BOGUS", "1", "notifications.bogus"),
            (
                "REGISTRY_NOTIFICATIONS_EVENTS_INCLUDEREFERENCES",
                "sometimes",
                "notifications.events.includereferences",
            ),
            ("REGISTRY_NOTIFICATIONS_OUTBOX_MAXBYTES", "0", "notifications.outbox.maxbytes"),
            ("REGISTRY_NOTIFICATIONS_ENDPOINTS_NAME", "a", "notifications.endpoints"),
            ("REGISTRY_NOTIFICATIONS_ENDPOINTS", "[{name: a}]", "notifications.endpoints[0].url"),
        ]:
            error = self.error(MINIMAL, **{variable: value})
            self.assertEqual(error.key, key, variable)

    def test_unknown_keys(self) -> None:
        """An unknown key anywhere in the section is named by its dotted path."""
        for section, key in [
            ("{bogus: 1}", "notifications.bogus"),
            ("{events: {bogus: 1}}", "notifications.events.bogus"),
            ("{outbox: {bogus: 1}}", "notifications.outbox.bogus"),
            (
                "{endpoints: [{name: a, url: 'http://h/', bogus: 1}]}",
                "notifications.endpoints[0].bogus",
            ),
            (
                "{endpoints: [{name: a, url: 'http://h/'}, {name: b, url: 'http://h/', x: 1}]}",
                "notifications.endpoints[1].x",
            ),
            (
                "{endpoints: [{name: a, url: 'http://h/', ignore: {bogus: 1}}]}",
                "notifications.endpoints[0].ignore.bogus",
            ),
        ]:
            error = self.error(MINIMAL + f"notifications: {section}\n")
            self.assertEqual((error.key, error.problem), (key, "unknown key"), section)

    def test_mistakes(self) -> None:
        """Every other mistake names its exact key."""
        endpoint = "name: a, url: 'http://h/'"
        for section, key in [
            ("[]", "notifications"),
            ("{events: []}", "notifications.events"),
            ("{events: {includereferences: maybe}}", "notifications.events.includereferences"),
            ("{endpoints: {name: a, url: 'http://h/'}}", "notifications.endpoints"),
            ("{endpoints: a}", "notifications.endpoints"),
            ("{endpoints: [a]}", "notifications.endpoints[0]"),
            (f"{{endpoints: [{{{endpoint}}}, ]}}", None),
            (f"{{endpoints: [{{{endpoint}}}, null]}}", "notifications.endpoints[1]"),
            ("{endpoints: [{url: 'http://h/'}]}", "notifications.endpoints[0].name"),
            ("{endpoints: [{name: a}]}", "notifications.endpoints[0].url"),
            ("{endpoints: [{name: [a], url: 'http://h/'}]}", "notifications.endpoints[0].name"),
            ("{endpoints: [{name: '', url: 'http://h/'}]}", "notifications.endpoints[0].name"),
            ("{endpoints: [{name: -a, url: 'http://h/'}]}", "notifications.endpoints[0].name"),
            ("{endpoints: [{name: a/b, url: 'http://h/'}]}", "notifications.endpoints[0].name"),
            ("{endpoints: [{name: a b, url: 'http://h/'}]}", "notifications.endpoints[0].name"),
            ("{endpoints: [{name: a, url: [x]}]}", "notifications.endpoints[0].url"),
            ("{endpoints: [{name: a, url: 'ftp://h/'}]}", "notifications.endpoints[0].url"),
            ("{endpoints: [{name: a, url: 'https:///path'}]}", "notifications.endpoints[0].url"),
            ("{endpoints: [{name: a, url: 'h/event'}]}", "notifications.endpoints[0].url"),
            ("{endpoints: [{name: a, url: 'http://h:port/'}]}", "notifications.endpoints[0].url"),
            ("{endpoints: [{name: a, url: 'http://[::1/'}]}", "notifications.endpoints[0].url"),
            (
                f"{{endpoints: [{{{endpoint}, disabled: 1}}]}}",
                "notifications.endpoints[0].disabled",
            ),
            (
                f"{{endpoints: [{{{endpoint}, headers: [X]}}]}}",
                "notifications.endpoints[0].headers",
            ),
            (
                f"{{endpoints: [{{{endpoint}, headers: {{X-A: [1]}}}}]}}",
                "notifications.endpoints[0].headers.X-A",
            ),
            (
                f"{{endpoints: [{{{endpoint}, headers: {{X-A: }}}}]}}",
                "notifications.endpoints[0].headers.X-A",
            ),
            (
                f"{{endpoints: [{{{endpoint}, headers: {{1: [a]}}}}]}}",
                "notifications.endpoints[0].headers.1",
            ),
            (
                f"{{endpoints: [{{{endpoint}, timeout: soon}}]}}",
                "notifications.endpoints[0].timeout",
            ),
            (
                f"{{endpoints: [{{{endpoint}, timeout: 1.5}}]}}",
                "notifications.endpoints[0].timeout",
            ),
            (f"{{endpoints: [{{{endpoint}, backoff: 1y}}]}}", "notifications.endpoints[0].backoff"),
            (
                f"{{endpoints: [{{{endpoint}, threshold: 2.5}}]}}",
                "notifications.endpoints[0].threshold",
            ),
            (
                f"{{endpoints: [{{{endpoint}, threshold: true}}]}}",
                "notifications.endpoints[0].threshold",
            ),
            (
                f"{{endpoints: [{{{endpoint}, ignoredmediatypes: [1]}}]}}",
                "notifications.endpoints[0].ignoredmediatypes",
            ),
            (
                f"{{endpoints: [{{{endpoint}, ignore: {{mediatypes: a}}}}]}}",
                "notifications.endpoints[0].ignore.mediatypes",
            ),
            (
                f"{{endpoints: [{{{endpoint}, ignore: {{actions: [pull, fetch]}}}}]}}",
                "notifications.endpoints[0].ignore.actions[1]",
            ),
            (
                f"{{endpoints: [{{{endpoint}, ignore: [pull]}}]}}",
                "notifications.endpoints[0].ignore",
            ),
            (f"{{endpoints: [{{{endpoint}, sink: ''}}]}}", "notifications.endpoints[0].sink"),
            (f"{{endpoints: [{{{endpoint}, sink: [a]}}]}}", "notifications.endpoints[0].sink"),
            (
                f"{{endpoints: [{{{endpoint}, options: [a]}}]}}",
                "notifications.endpoints[0].options",
            ),
            (
                f"{{endpoints: [{{{endpoint}, options: {{1: a}}}}]}}",
                "notifications.endpoints[0].options.1",
            ),
            ("{outbox: []}", "notifications.outbox"),
            ("{outbox: {path: ''}}", "notifications.outbox.path"),
            ("{outbox: {path: [a]}}", "notifications.outbox.path"),
            ("{outbox: {maxbytes: 0}}", "notifications.outbox.maxbytes"),
            ("{outbox: {maxbytes: -1}}", "notifications.outbox.maxbytes"),
            ("{outbox: {maxbytes: 1GiB}}", "notifications.outbox.maxbytes"),
            ("{outbox: {maxbytes: 1.5}}", "notifications.outbox.maxbytes"),
        ]:
            text = MINIMAL + f"notifications: {section}\n"
            if key is None:
                # YAML's trailing comma in a flow list adds no entry.
                self.assertEqual(len(load(text).notifications.endpoints), 1)
                continue
            error = self.error(text)
            self.assertEqual(error.key, key, section)
            self.assertNotIn("\n", str(error))

    def test_missing_said(self) -> None:
        """A missing name or URL is said to be missing."""
        for entry, key in [
            ("{url: 'http://h/'}", "notifications.endpoints[0].name"),
            ("{name: a, disabled: true}", "notifications.endpoints[0].url"),
        ]:
            error = self.error(MINIMAL + f"notifications: {{endpoints: [{entry}]}}\n")
            self.assertEqual(error.key, key)
            self.assertIn("missing", error.problem)

    def test_name_rule_said(self) -> None:
        """A name that cannot be used says what a name must be."""
        error = self.error(
            MINIMAL + "notifications: {endpoints: [{name: ../etc, url: 'http://h/'}]}\n"
        )
        self.assertIn("[A-Za-z0-9][A-Za-z0-9._-]*", error.problem)

    def test_unknown_action_said(self) -> None:
        """An unknown action is named, with the actions there are."""
        error = self.error(
            MINIMAL
            + "notifications: {endpoints: [{name: a, url: 'http://h/',"
            + " ignore: {actions: [get]}}]}\n"
        )
        for action in ("pull", "push", "mount", "delete"):
            self.assertIn(action, error.problem)

    def test_names_unique(self) -> None:
        """
        Two endpoints may not share a name, even differing in case only (a
        name is a file name, and some filesystems ignore case); the second is
        named, with the first.
        """
        for second in ("hook", "HOOK"):
            error = self.error(
                MINIMAL
                + textwrap.dedent(
                    f"""\
                    notifications:
                      endpoints:
                        - {{name: hook, url: 'http://h/1'}}
                        - {{name: other, url: 'http://h/2'}}
                        - {{name: {second}, url: 'http://h/3', disabled: true}}
                    """
                )
            )
            self.assertEqual(error.key, "notifications.endpoints[2].name", second)
            self.assertIn("notifications.endpoints[0]", error.problem)


class RedisSectionTests(ConfigTestCase):
    """
    C{redis}: Distribution 2.8's keys and 3's, for the one Redis server the
    C{redis} blob descriptor cache uses.
    """

    def test_distribution_2_8(self) -> None:
        """Distribution 2.8's documented keys, each set, become the typed section."""
        config = load(
            MINIMAL
            + textwrap.dedent(
                """\
                redis:
                  addr: redis.example:6380
                  password: asecret
                  db: 3
                  dialtimeout: 10ms
                  readtimeout: 20ms
                  writetimeout: 30ms
                  pool:
                    maxidle: 8
                    maxactive: 32
                    idletimeout: 5m
                  tls:
                    enabled: true
                """
            )
        )
        self.assertEqual(
            config.redis,
            RedisConfig(
                host="redis.example",
                port=6380,
                password="asecret",
                db=3,
                dial_timeout=0.01,
                read_timeout=0.02,
                write_timeout=0.03,
                pool=RedisPoolConfig(max_idle=8, max_active=32, idle_timeout=300.0),
                tls=RedisTLSConfig(enabled=True),
            ),
        )
        assert config.redis is not None
        self.assertEqual(config.redis.addr, "redis.example:6380")
        self.assertEqual(config.warnings, ())

    def test_distribution_3(self) -> None:
        """
        Distribution 3's keys: C{addrs} of one server, C{username}, the pool's
        go-redis names, and a client certificate, which implies TLS.
        """
        config = load(
            MINIMAL
            + textwrap.dedent(
                """\
                redis:
                  addrs: ["[fd00::5]:6390"]
                  username: registry
                  password: 12345
                  db: 1
                  dialtimeout: 2s
                  maxidleconns: 4
                  poolsize: 20
                  connmaxidletime: 1m
                  tls:
                    certificate: /etc/registry/redis.crt
                    key: /etc/registry/redis.key
                    clientcas: [/etc/registry/redis-ca.pem]
                """
            )
        )
        self.assertEqual(
            config.redis,
            RedisConfig(
                host="fd00::5",
                port=6390,
                username="registry",
                password="12345",
                db=1,
                dial_timeout=2.0,
                pool=RedisPoolConfig(max_idle=4, max_active=20, idle_timeout=60.0),
                tls=RedisTLSConfig(
                    enabled=True,
                    certificate="/etc/registry/redis.crt",
                    key="/etc/registry/redis.key",
                    client_cas=("/etc/registry/redis-ca.pem",),
                ),
            ),
        )
        assert config.redis is not None
        self.assertEqual(config.redis.addr, "[fd00::5]:6390")
        # Server CAs alone also ask for TLS.
        redis = load(MINIMAL + "redis: {addr: r, tls: {clientcas: [/ca.pem]}}\n").redis
        assert redis is not None
        self.assertEqual(redis.tls, RedisTLSConfig(enabled=True, client_cas=("/ca.pem",)))

    def test_defaults(self) -> None:
        """With only an address, the rest takes txregistry's defaults."""
        redis = load(MINIMAL + "redis: {addr: redis.example}\n").redis
        self.assertEqual(
            redis,
            RedisConfig(
                "redis.example",
                6379,
                None,
                None,
                0,
                1.0,
                0.1,
                0.1,
                RedisPoolConfig(16, 64, 300.0),
                RedisTLSConfig(False, None, None, ()),
            ),
        )
        assert redis is not None
        self.assertEqual(redis.addr, "redis.example:6379")

    def test_addresses(self) -> None:
        """Host names, IPv4 and IPv6 addresses, with or without a port."""
        for addr, host, port, given_back in [
            ("localhost:6379", "localhost", 6379, "localhost:6379"),
            ("10.0.0.7:7000", "10.0.0.7", 7000, "10.0.0.7:7000"),
            ("10.0.0.7", "10.0.0.7", 6379, "10.0.0.7:6379"),
            ("[::1]:6379", "::1", 6379, "[::1]:6379"),
            ("[::1]", "::1", 6379, "[::1]:6379"),
            ("redis:65535", "redis", 65535, "redis:65535"),
        ]:
            redis = load(MINIMAL + f"redis: {{addr: '{addr}'}}\n").redis
            assert redis is not None
            self.assertEqual((redis.host, redis.port, redis.addr), (host, port, given_back), addr)

    def test_absent(self) -> None:
        """Without the section, or with no value set (as Distribution reads it), no Redis."""
        for extra in (
            "",
            "redis:\n",
            "redis: {}\n",
            "redis: {addr: '', password: '', db: 0}\n",
            "redis: {addr: , pool: }\n",
        ):
            self.assertIsNone(load(MINIMAL + extra).redis, extra)

    def test_empty_strings(self) -> None:
        """An empty user, password, certificate or key is none, as in Go."""
        redis = load(
            MINIMAL
            + "redis: {addr: r, username: '', password: '', tls: {certificate: '', key: ''}}\n"
        ).redis
        self.assertEqual(redis, RedisConfig("r", 6379))

    def test_environment(self) -> None:
        """C{REGISTRY_REDIS_*} sets the section's keys, creating it if need be."""
        config = load(
            MINIMAL,
            REGISTRY_REDIS_ADDR="redis.internal:6380",
            REGISTRY_REDIS_PASSWORD="from-env",
            REGISTRY_REDIS_POOL_MAXACTIVE="8",
            REGISTRY_REDIS_TLS_ENABLED="true",
        )
        self.assertEqual(
            config.redis,
            RedisConfig(
                "redis.internal",
                6380,
                password="from-env",
                pool=RedisPoolConfig(max_active=8),
                tls=RedisTLSConfig(enabled=True),
            ),
        )
        redis = load(MINIMAL + "redis: {addr: a:1}\n", REGISTRY_REDIS_ADDR="b:2").redis
        assert redis is not None
        self.assertEqual(redis.addr, "b:2")
        for variable, key in [
            ("REGISTRY_REDIS_BOGUS", "REGISTRY_REDIS_BOGUS"),
            ("REGISTRY_REDIS_POOL_BOGUS", "REGISTRY_REDIS_POOL_BOGUS"),
        ]:
            self.assertEqual(self.error(MINIMAL, **{variable: "1"}).key, key)
        error = self.error(MINIMAL, REGISTRY_REDIS_ADDR="redis:99999")
        self.assertEqual(error.key, "redis.addr")

    def test_mistakes(self) -> None:
        """Each mistake names its key."""
        for section, key in [
            ("[a]", "redis"),
            ("{bogus: 1}", "redis.bogus"),
            ("{addr: a, pool: {bogus: 1}}", "redis.pool.bogus"),
            ("{addr: a, tls: {bogus: 1}}", "redis.tls.bogus"),
            ("{addr: a, sentinelpassword: x}", "redis.sentinelpassword"),
            # The address.
            ("{password: secret}", "redis.addr"),
            ("{addr: '', db: 2}", "redis.addr"),
            ("{addr: [a]}", "redis.addr"),
            ("{addr: 'redis:port'}", "redis.addr"),
            ("{addr: 'redis:70000'}", "redis.addr"),
            # More digits than int() reads (was a ValueError).
            ("{addr: 'redis:" + "9" * 5000 + "'}", "redis.addr"),
            ("{addr: 'redis:0'}", "redis.addr"),
            ("{addr: ':6379'}", "redis.addr"),
            ("{addr: '::1'}", "redis.addr"),
            ("{addr: '[::1'}", "redis.addr"),
            ("{addr: '[::1]6379'}", "redis.addr"),
            ("{addr: 'redis host:6379'}", "redis.addr"),
            ("{addr: 'redis://redis:6379'}", "redis.addr"),
            ("{addrs: 'a:1'}", "redis.addrs"),
            ("{addrs: ['a:1', 'b:1']}", "redis.addrs"),
            ("{addrs: ['a:99999']}", "redis.addrs[0]"),
            ("{addr: 'a:1', addrs: ['a:1']}", "redis.addrs"),
            # The numbers and durations.
            ("{addr: a, db: -1}", "redis.db"),
            ("{addr: a, db: one}", "redis.db"),
            ("{addr: a, dialtimeout: 0s}", "redis.dialtimeout"),
            ("{addr: a, readtimeout: -5}", "redis.readtimeout"),
            ("{addr: a, writetimeout: soon}", "redis.writetimeout"),
            ("{addr: a, pool: {maxactive: 0}}", "redis.pool.maxactive"),
            ("{addr: a, poolsize: 0}", "redis.poolsize"),
            ("{addr: a, pool: {maxidle: -1}}", "redis.pool.maxidle"),
            ("{addr: a, maxidleconns: -1}", "redis.maxidleconns"),
            ("{addr: a, pool: {idletimeout: 0s}}", "redis.pool.idletimeout"),
            ("{addr: a, connmaxidletime: -1}", "redis.connmaxidletime"),
            ("{addr: a, pool: {maxactive: 8}, poolsize: 8}", "redis.poolsize"),
            ("{addr: a, pool: {maxidle: 8}, maxidleconns: 8}", "redis.maxidleconns"),
            ("{addr: a, pool: {idletimeout: 1m}, connmaxidletime: 1m}", "redis.connmaxidletime"),
            # TLS.
            ("{addr: a, tls: {enabled: sometimes}}", "redis.tls.enabled"),
            ("{addr: a, tls: {certificate: /c.pem}}", "redis.tls.key"),
            ("{addr: a, tls: {key: /k.pem}}", "redis.tls.certificate"),
            ("{addr: a, tls: {clientcas: ['']}}", "redis.tls.clientcas[0]"),
            ("{addr: a, tls: {clientcas: /ca.pem}}", "redis.tls.clientcas"),
            ("{addr: a, tls: {enabled: false, clientcas: [/ca.pem]}}", "redis.tls.enabled"),
        ]:
            error = self.error(MINIMAL + f"redis: {section}\n")
            self.assertEqual(error.key, key, section)
            self.assertNotIn("\n", str(error))
        error = self.error(MINIMAL + "redis: {addrs: [a, b]}\n")
        self.assertEqual(error.problem, "txregistry connects to one Redis server")

    def test_blob_descriptor_cache(self) -> None:
        """
        C{storage.cache.blobdescriptor: redis} needs the C{redis} section; the
        file or the environment may give it.
        """
        cache = "version: 0.1\nstorage: {inmemory: {}, cache: {blobdescriptor: redis}}\n"
        config = load(cache + "redis: {addr: redis:6379}\n")
        self.assertEqual(config.storage.blob_descriptor_cache, "redis")
        self.assertEqual(config.redis, RedisConfig("redis", 6379))
        config = load(cache, REGISTRY_REDIS_ADDRS="[redis:6379]")
        self.assertEqual(config.redis, RedisConfig("redis", 6379))
        for extra in ("", "redis:\n", "redis: {addr: ''}\n"):
            error = self.error(cache + extra)
            self.assertEqual(
                (error.key, error.problem),
                ("redis.addr", "required by storage.cache.blobdescriptor: redis"),
                extra,
            )
        # A section without an address says so, whatever the cache.
        self.assertEqual(self.error(cache + "redis: {db: 1}\n").key, "redis.addr")

    def test_cache_names(self) -> None:
        """
        C{storage.cache.blobdescriptor} names an installed cache plugin; with
        no plugins given, any name is taken.
        """
        error = self.error(
            "version: 0.1\nstorage: {inmemory: {}, cache: {blobdescriptor: memcached}}\n"
        )
        self.assertEqual(
            (error.key, error.problem),
            (
                "storage.cache.blobdescriptor",
                "unknown cache 'memcached' (installed: inmemory, redis)",
            ),
        )
        error = self.error("version: 0.1\nstorage: {inmemory: {}, cache: {blobdescriptor: ''}}\n")
        self.assertEqual(error.key, "storage.cache.blobdescriptor")
        config = load_config(
            "version: 0.1\nstorage: {inmemory: {}, cache: {blobdescriptor: memcached}}\n",
            environ={},
        )
        self.assertEqual(config.storage.blob_descriptor_cache, "memcached")


class ProxySectionTests(ConfigTestCase):
    """
    C{proxy}: Distribution 3's one upstream (C{remoteurl}, C{username},
    C{password}, C{ttl}) and ours (C{checktimeout}, C{remotes} by prefix).
    """

    def test_absent(self) -> None:
        """No section, or one naming no remote, is no proxy, as for Distribution."""
        self.assertIsNone(load(MINIMAL).proxy)
        for extra in ("proxy:\n", "proxy: {remoteurl: ''}\n", "proxy: {remotes: []}\n"):
            config = load(MINIMAL + extra)
            self.assertIsNone(config.proxy, extra)
            self.assertEqual(config.warnings, (), extra)

    def test_no_remote_warns(self) -> None:
        """Keys set beside no remote are ignored, with a warning saying so."""
        config = load(MINIMAL + "proxy: {username: alice, ttl: 1h}\n")
        self.assertIsNone(config.proxy)
        self.assertEqual([warning.split(":")[0] for warning in config.warnings], ["proxy"])

    def test_defaults(self) -> None:
        """A C{remoteurl} alone: anonymous, kept a week (168h), checked for 5 s."""
        config = load(MINIMAL + "proxy: {remoteurl: https://registry-1.docker.io/}\n")
        self.assertEqual(
            config.proxy,
            ProxyConfig(
                remotes=(Remote("", "https://registry-1.docker.io", None, None, 604800.0),)
            ),
        )
        assert config.proxy is not None
        self.assertEqual(config.proxy.check_timeout, 5.0)
        self.assertEqual(config.warnings, ())

    def test_every_key(self) -> None:
        """
        Every key set: remotes sorted longest prefix first, the default last;
        a remote's C{ttl} defaults to C{proxy.ttl}; a C{ttl} of 0 keeps for ever.
        """
        config = load(
            MINIMAL
            + textwrap.dedent(
                """\
                proxy:
                  remoteurl: https://registry-1.docker.io
                  username: alice
                  password: 12345
                  ttl: 24h
                  checktimeout: 1500ms
                  remotes:
                    - prefix: ghcr
                      remoteurl: https://ghcr.io
                      username: bob
                      password: secret
                      ttl: 0
                    - prefix: /mirror/quay/
                      remoteurl: http://quay.example:8080/
                      username: carol
                """
            )
        )
        self.assertEqual(
            config.proxy,
            ProxyConfig(
                remotes=(
                    Remote("mirror/quay", "http://quay.example:8080", "carol", None, 86400.0),
                    Remote("ghcr", "https://ghcr.io", "bob", "secret", None),
                    Remote("", "https://registry-1.docker.io", "alice", "12345", 86400.0),
                ),
                check_timeout=1.5,
            ),
        )

    def test_ttl_zero(self) -> None:
        """C{proxy.ttl: 0} disables expiry, for the remotes that set none too."""
        config = load(
            MINIMAL
            + "proxy: {remoteurl: https://r.example, ttl: 0, "
            + "remotes: [{prefix: a, remoteurl: https://a.example}]}\n"
        )
        assert config.proxy is not None
        self.assertEqual([remote.ttl for remote in config.proxy.remotes], [None, None])

    def test_remotes_without_default(self) -> None:
        """C{remotes} alone make a proxy with no default remote."""
        config = load(MINIMAL + "proxy: {remotes: [{prefix: a, remoteurl: https://a.example}]}\n")
        self.assertEqual(config.proxy, ProxyConfig((Remote("a", "https://a.example"),)))

    def test_mistakes(self) -> None:
        """Every mistake is named by its key."""
        one = "remotes: [{prefix: a, remoteurl: https://a.example}"
        for proxy, key in [
            ("remoteurl: ftp://r.example", "proxy.remoteurl"),
            ("remoteurl: https://", "proxy.remoteurl"),
            ("remoteurl: https://r.example, password: secret", "proxy.username"),
            ("remoteurl: https://r.example, ttl: -1", "proxy.ttl"),
            ("remoteurl: https://r.example, ttl: soon", "proxy.ttl"),
            ("remoteurl: https://r.example, checktimeout: 0", "proxy.checktimeout"),
            ("remoteurl: https://r.example, checktimeout: -5", "proxy.checktimeout"),
            ("remoteurl: https://r.example, bogus: 1", "proxy.bogus"),
            ("remoteurl: https://r.example, exec: {command: helper}", "proxy.exec"),
            ("remotes: {prefix: a, remoteurl: https://a.example}", "proxy.remotes"),
            ("remotes: [a]", "proxy.remotes[0]"),
            (one + ", {prefix: b}]", "proxy.remotes[1].remoteurl"),
            (one + ", {prefix: b, remoteurl: b.example}]", "proxy.remotes[1].remoteurl"),
            (one + ", {remoteurl: https://b.example}]", "proxy.remotes[1].prefix"),
            (one + ", {prefix: /, remoteurl: https://b.example}]", "proxy.remotes[1].prefix"),
            (one + ", {prefix: a/, remoteurl: https://b.example}]", "proxy.remotes[1].prefix"),
            (one + ", {prefix: Ghcr, remoteurl: https://b.example}]", "proxy.remotes[1].prefix"),
            (one + ", {prefix: a//b, remoteurl: https://b.example}]", "proxy.remotes[1].prefix"),
            (
                one + ", {prefix: 'a:5000', remoteurl: https://b.example}]",
                "proxy.remotes[1].prefix",
            ),
            (one + ", {prefix: -a, remoteurl: https://b.example}]", "proxy.remotes[1].prefix"),
            (one + ", {prefix: [a], remoteurl: https://b.example}]", "proxy.remotes[1].prefix"),
            (
                one + f", {{prefix: {'a' * 254}, remoteurl: https://b.example}}]",
                "proxy.remotes[1].prefix",
            ),
            (
                one + ", {prefix: b, remoteurl: https://b.example, password: x}]",
                "proxy.remotes[1].username",
            ),
            (one + ", {prefix: b, remoteurl: https://b.example, ttl: -1}]", "proxy.remotes[1].ttl"),
            (
                one + ", {prefix: b, remoteurl: https://b.example, bogus: 1}]",
                "proxy.remotes[1].bogus",
            ),
            (
                one + ", {prefix: b, remoteurl: https://b.example, exec: {}}]",
                "proxy.remotes[1].exec",
            ),
        ]:
            error = self.error(MINIMAL + f"proxy: {{{proxy}}}\n")
            self.assertEqual(error.key, key, proxy)
        error = self.error(
            MINIMAL + f"proxy: {{{one}, {{prefix: a/, remoteurl: https://b.example}}]}}\n"
        )
        self.assertIn("'a' is already the prefix of proxy.remotes[0]", error.problem)
        error = self.error(MINIMAL + "proxy: {remoteurl: https://r.example, exec: {command: x}}\n")
        self.assertIn("not supported", error.problem)

    def test_remote_for(self) -> None:
        """The longest prefix matching whole components wins; else the default."""
        hub = Remote("", "https://registry-1.docker.io")
        ghcr = Remote("ghcr", "https://ghcr.io")
        deep = Remote("ghcr/mirror", "https://mirror.example")
        proxy = ProxyConfig((deep, ghcr, hub))
        for name, expected in [
            ("ghcr/owner/img", (ghcr, "owner/img")),
            ("ghcr/mirror/img", (deep, "img")),
            ("ghcr/mirrorx/img", (ghcr, "mirrorx/img")),
            ("ghcrx/owner/img", (hub, "ghcrx/owner/img")),
            ("library/alpine", (hub, "library/alpine")),
            # A name equal to a prefix leaves no repository to ask it for.
            ("ghcr", (hub, "ghcr")),
            ("ghcr/mirror", (ghcr, "mirror")),
        ]:
            self.assertEqual(proxy.remote_for(name), expected, name)
        without_default = ProxyConfig((deep, ghcr))
        for name in ("library/alpine", "ghcr", "ghcrx/img"):
            self.assertIsNone(without_default.remote_for(name), name)
        self.assertEqual(without_default.remote_for("ghcr/mirror"), (ghcr, "mirror"))

    def test_remote_for_configured_order(self) -> None:
        """The section sorts its remotes so that C{remote_for} finds the longest prefix."""
        config = load(
            MINIMAL
            + "proxy: {remoteurl: https://hub.example, remotes: ["
            + "{prefix: a, remoteurl: https://a.example}, "
            + "{prefix: a/b, remoteurl: https://ab.example}]}\n"
        )
        assert config.proxy is not None
        self.assertEqual([remote.prefix for remote in config.proxy.remotes], ["a/b", "a", ""])
        found = config.proxy.remote_for("a/b/c")
        assert found is not None
        self.assertEqual((found[0].url, found[1]), ("https://ab.example", "c"))

    def test_environment(self) -> None:
        """C{REGISTRY_PROXY_*} set the section's keys, as for Distribution."""
        config = load(
            MINIMAL,
            REGISTRY_PROXY_REMOTEURL="https://registry.example",
            REGISTRY_PROXY_USERNAME="alice",
            REGISTRY_PROXY_PASSWORD="12345",
            REGISTRY_PROXY_TTL="1h",
        )
        self.assertEqual(
            config.proxy,
            ProxyConfig((Remote("", "https://registry.example", "alice", "12345", 3600.0),)),
        )
        config = load(
            MINIMAL + "proxy: {remoteurl: https://file.example}\n",
            REGISTRY_PROXY_REMOTEURL="https://env.example",
            REGISTRY_PROXY_REMOTES="[{prefix: ghcr, remoteurl: 'https://ghcr.io'}]",
        )
        assert config.proxy is not None
        self.assertEqual(
            [(remote.prefix, remote.url) for remote in config.proxy.remotes],
            [("ghcr", "https://ghcr.io"), ("", "https://env.example")],
        )
        error = self.error(MINIMAL, REGISTRY_PROXY_EXEC_COMMAND="helper")
        self.assertEqual(error.key, "proxy.exec")
        self.assertIn("not supported", error.problem)


class TLSSectionTests(ConfigTestCase):
    """
    C{http.tls} becomes a typed L{TLSConfig}; its files are read when the
    service is built (C{tests/test_tls.py}).
    """

    def test_section(self) -> None:
        """Every key reaches the config; Distribution's defaults fill the rest."""
        config = load(
            MINIMAL
            + textwrap.dedent(
                """\
                http:
                  tls:
                    certificate: /etc/registry/chain.pem
                    key: /etc/registry/key.pem
                    clientcas: [/etc/registry/ca-1.pem, /etc/registry/ca-2.pem]
                    minimumtls: tls1.3
                    ciphersuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
                """
            )
        )
        self.assertEqual(
            config.http.tls,
            TLSConfig(
                certificate="/etc/registry/chain.pem",
                key="/etc/registry/key.pem",
                client_cas=("/etc/registry/ca-1.pem", "/etc/registry/ca-2.pem"),
                minimum_version="tls1.3",
                cipher_suites=("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",),
            ),
        )
        config = load(MINIMAL + "http: {tls: {certificate: /c.pem, key: /k.pem}}\n")
        assert config.http.tls is not None
        self.assertEqual(config.http.tls.client_cas, ())
        self.assertEqual(config.http.tls.minimum_version, "tls1.2")
        self.assertEqual(config.http.tls.cipher_suites, DEFAULT_TLS_CIPHER_SUITES)

    def test_none(self) -> None:
        """Without the section, or with nothing set in it, HTTP is plain, as for Distribution."""
        for extra in ("", "http: {tls: }\n", "http: {tls: {}}\n", "http: {tls: {key: ''}}\n"):
            self.assertIsNone(load(MINIMAL + extra).http.tls, extra)

    def test_environment(self) -> None:
        """C{REGISTRY_HTTP_TLS_*} set the keys, as for Distribution."""
        config = load(
            MINIMAL,
            REGISTRY_HTTP_TLS_CERTIFICATE="/c.pem",
            REGISTRY_HTTP_TLS_KEY="/k.pem",
            REGISTRY_HTTP_TLS_CLIENTCAS="[/ca.pem]",
        )
        self.assertEqual(config.http.tls, TLSConfig("/c.pem", "/k.pem", ("/ca.pem",)))

    def test_mistakes(self) -> None:
        """A certificate without its key (or the reverse), or a value that means nothing."""
        for tls, key in [
            ("{certificate: /c.pem}", "http.tls.key"),
            ("{key: /k.pem}", "http.tls.certificate"),
            ("{clientcas: [/ca.pem]}", "http.tls.certificate"),
            ("{certificate: /c.pem, key: ''}", "http.tls.key"),
            ("{certificate: /c.pem, key: /k.pem, minimumtls: tls1.4}", "http.tls.minimumtls"),
            ("{certificate: /c.pem, key: /k.pem, minimumtls: TLS1.2}", "http.tls.minimumtls"),
            ("{certificate: /c.pem, key: /k.pem, clientcas: /ca.pem}", "http.tls.clientcas"),
            ("{certificate: /c.pem, key: /k.pem, clientcas: ['']}", "http.tls.clientcas[0]"),
            (
                "{certificate: /c.pem, key: /k.pem, ciphersuites: [TLS_AES_128_GCM_SHA256, RC4]}",
                "http.tls.ciphersuites[1]",
            ),
            ("{certificate: /c.pem, key: /k.pem, letsencrypt: {}}", "http.tls.letsencrypt"),
            ("{certificate: /c.pem, key: /k.pem, bogus: 1}", "http.tls.bogus"),
            ("[/c.pem]", "http.tls"),
        ]:
            error = self.error(MINIMAL + f"http: {{tls: {tls}}}\n")
            self.assertEqual(error.key, key, tls)
            self.assertNotIn("\n", str(error))


class EndpointTests(SynchronousTestCase):
    """Distribution's C{http.addr} and C{http.net} as Twisted endpoints."""

    def listen(self, description: str) -> tuple[Any, ...]:
        reactor = MemoryReactor()
        serverFromString(reactor, description).listen(Factory())
        self.assertEqual(len(reactor.tcpServers) + len(reactor.unixServers), 1)
        return (reactor.tcpServers or reactor.unixServers)[0]

    def test_tcp(self) -> None:
        """Every interface, one address, localhost and IPv6 listen where they say."""
        for addr, description, port, interface in [
            (":5000", "tcp:5000", 5000, ""),
            ("0.0.0.0:5000", "tcp:5000:interface=0.0.0.0", 5000, "0.0.0.0"),
            ("127.0.0.1:0", "tcp:0:interface=127.0.0.1", 0, "127.0.0.1"),
            ("localhost:5000", "tcp:5000:interface=127.0.0.1", 5000, "127.0.0.1"),
            ("[::1]:5000", r"tcp:5000:interface=\:\:1", 5000, "::1"),
            ("[::]:5001", r"tcp:5001:interface=\:\:", 5001, "::"),
        ]:
            self.assertEqual(endpoint_description(addr, "tcp"), description, addr)
            listened = self.listen(description)
            self.assertEqual((listened[0], listened[3]), (port, interface), addr)

    def test_unix(self) -> None:
        """A unix socket path, colons included."""
        self.assertEqual(
            endpoint_description("/run/registry.sock", "unix"), "unix:/run/registry.sock"
        )
        description = endpoint_description("/run/a:b.sock", "unix")
        self.assertEqual(self.listen(description)[0], "/run/a:b.sock")

    def test_invalid(self) -> None:
        """An address that is not host:port is named."""
        for addr in ("5000", "localhost", "host:port", ":", "[::1]5000"):
            error = self.assertRaises(ConfigError, endpoint_description, addr, "tcp")
            self.assertEqual(error.key, "http.addr")


def section_modules() -> dict[str, Section]:
    """The L{Section} of every module of C{txregistry.config} that has one, by module."""
    found = {}
    for module in pkgutil.iter_modules(txregistry.config.__path__):
        imported = importlib.import_module(f"txregistry.config.{module.name}")
        section = getattr(imported, "SECTION", None)
        if isinstance(section, Section):
            found[module.name] = section
    return found


class StructureTests(SynchronousTestCase):
    """
    The configuration is made of its section modules, each registered once
    in C{txregistry.config.sections}.
    """

    def test_schema_is_the_section_modules(self) -> None:
        """
        The top-level keys the schema accepts are the keys of the section
        modules: a module left unregistered, or registered twice, fails.
        """
        module_keys = sorted(section.key for section in section_modules().values())
        self.assertEqual(sorted(SCHEMA), module_keys)
        self.assertEqual(sorted(section.key for section in SECTIONS), module_keys)

    def test_keys_unique(self) -> None:
        """No two section modules claim the same top-level key."""
        modules = section_modules()
        keys = [section.key for section in modules.values()]
        self.assertEqual(len(keys), len(set(keys)), modules)

    def test_config_attributes(self) -> None:
        """
        Every attribute of L{Config} but the warnings is filled by exactly one
        registered section, and every section that fills one builds it.
        """
        attributes = [section.attribute for section in SECTIONS if section.attribute]
        self.assertEqual(
            sorted(attributes),
            sorted(field.name for field in dataclasses.fields(Config) if field.name != "warnings"),
        )
        for section in SECTIONS:
            if section.attribute:
                self.assertIsNotNone(section.build, section.key)

    def test_import_is_light(self) -> None:
        """Importing the configuration imports YAML, but neither Twisted nor botocore."""
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import txregistry.config"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        imported = {
            line.rsplit("|", 1)[-1].strip()
            for line in result.stderr.splitlines()
            if line.startswith("import time:")
        }
        self.assertIn("yaml", imported)
        heavy = {name for name in imported if name.split(".")[0] in ("twisted", "botocore")}
        self.assertEqual(heavy, set())


class ReadConfigTests(SynchronousTestCase):
    """L{read_config} reads the file it is given."""

    def test_not_utf8(self) -> None:
        """A file that is not UTF-8 (a Latin-1 comment) is named (was a UnicodeDecodeError)."""
        path = os.path.join(temporary_directory(self, "txregistry-config-"), "latin1.yml")
        with open(path, "wb") as file:
            file.write(MINIMAL.encode("ascii") + b"# caf\xe9\n")
        error = self.assertRaises(ConfigError, read_config, path)
        self.assertEqual(error.key, path)
        self.assertIn("not UTF-8", error.problem)


class ProcessTests(SynchronousTestCase):
    """C{twist registry} with a bad configuration exits at once with one line."""

    def run_registry(self, config: str) -> subprocess.CompletedProcess[str]:
        directory = temporary_directory(self, "txregistry-config-")
        path = os.path.join(directory, "bad.yml")
        with open(path, "w") as file:
            file.write(config)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "twisted", "registry", "--config", path],
            cwd=directory,
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertLess(time.monotonic() - started, 15, "the registry took long to give up")
        return result

    def assert_one_line(self, result: subprocess.CompletedProcess[str], key: str) -> None:
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("Traceback", result.stderr + result.stdout)
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertTrue(lines[0].startswith("txregistry: configuration error: "), lines[0])
        self.assertIn(key, lines[0])

    def test_unknown_key(self) -> None:
        """An unknown key in the file."""
        result = self.run_registry(MINIMAL + "http:\n  addr: 127.0.0.1:0\n  bogus: 1\n")
        self.assert_one_line(result, "http.bogus: unknown key")

    def test_unknown_driver_parameter(self) -> None:
        """An unknown parameter of the driver, found by the driver's factory."""
        result = self.run_registry(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ./data\n    bogus: 1\n"
            "http:\n  addr: 127.0.0.1:0\n"
        )
        self.assert_one_line(result, "storage.filesystem.bogus: unknown key")

    def test_unknown_storage_middleware(self) -> None:
        """A storage middleware no plugin provides, found when the driver is wrapped."""
        result = self.run_registry(
            MINIMAL + "http:\n  addr: 127.0.0.1:0\nmiddleware:\n  storage:\n    - name: cdn\n"
        )
        self.assert_one_line(result, "middleware.storage[0].name: unknown storage middleware")
        self.assertIn("redirect", result.stderr)

    def test_bad_redirect_base_url(self) -> None:
        """An option the middleware's factory refuses."""
        result = self.run_registry(
            MINIMAL
            + "http:\n  addr: 127.0.0.1:0\nmiddleware:\n  storage:\n    - name: redirect\n"
            + "      options: {baseurl: cdn.example}\n"
        )
        self.assert_one_line(result, "middleware.storage[0].options.baseurl: ")


class LogFormatTests(SynchronousTestCase):
    """The log lines each formatter writes, with the configured fields."""

    def lines(self, formatter: str, emit: Any, fields: dict[str, Any] | None = None) -> list[str]:
        output = io.StringIO()
        config = LogConfig(formatter=formatter, fields=fields or {})
        observer = observer_factory(config)(output)
        emit(Logger(namespace="txregistry.test", observer=observer))
        return output.getvalue().splitlines()

    def test_json(self) -> None:
        """One JSON object per line, with logrus's keys and the fields."""

        def emit(log: Logger) -> None:
            log.info("pushed {name}", name="library/alpine")
            log.warn("careful")

        lines = self.lines("json", emit, {"service": "registry", "environment": "test"})
        records = [json.loads(line) for line in lines]
        self.assertEqual(len(records), 2)
        first, second = records
        self.assertEqual(first["msg"], "pushed library/alpine")
        self.assertEqual(first["level"], "info")
        self.assertEqual(second["level"], "warning")
        self.assertEqual((first["service"], first["environment"]), ("registry", "test"))
        self.assertEqual(first["logger"], "txregistry.test")
        self.assertRegex(first["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

    def test_logstash(self) -> None:
        """Logstash's keys, and the fields."""
        lines = self.lines("logstash", lambda log: log.error("broken"), {"service": "registry"})
        self.assertEqual(len(lines), 1)
        record = json.loads(lines[0])
        self.assertEqual(record["message"], "broken")
        self.assertEqual((record["@version"], record["level"]), ("1", "error"))
        self.assertEqual(record["service"], "registry")
        self.assertTrue(record["@timestamp"].endswith("Z"))

    def test_failure_stays_on_one_line(self) -> None:
        """A traceback is part of the message, not lines of its own."""

        def emit(log: Logger) -> None:
            try:
                1 / 0  # noqa: B018
            except ZeroDivisionError:
                log.failure("it broke")

        for formatter in ("json", "logstash"):
            lines = self.lines(formatter, emit)
            self.assertEqual(len(lines), 1, formatter)
            record = json.loads(lines[0])
            message = record.get("msg", record.get("message"))
            self.assertIn("it broke", message)
            self.assertIn("ZeroDivisionError", message)
            self.assertEqual(record["level"], "fatal")

    def test_text_adds_fields(self) -> None:
        """Text lines end with the fields as key=value."""
        lines = self.lines("text", lambda log: log.info("hello"), {"service": "registry", "n": 1})
        self.assertEqual(len(lines), 1)
        self.assertTrue(lines[0].endswith("hello service=registry n=1"), lines[0])
        plain = self.lines("text", lambda log: log.info("hello"))
        self.assertTrue(plain[0].endswith("] hello"), plain[0])

    def test_levels(self) -> None:
        """Distribution's level names map to Twisted's levels."""
        for name, level in [
            ("debug", LogLevel.debug),
            ("trace", LogLevel.debug),
            ("info", LogLevel.info),
            ("warn", LogLevel.warn),
            ("warning", LogLevel.warn),
            ("error", LogLevel.error),
            ("fatal", LogLevel.critical),
            ("panic", LogLevel.critical),
        ]:
            self.assertEqual(log_level(LogConfig(level=name)), level, name)


class DebugSectionTests(ConfigTestCase):
    """C{http.debug}: the debug server's address and its Prometheus metrics."""

    def test_absent(self) -> None:
        """Without the section there is no debug server."""
        self.assertIsNone(load(MINIMAL).http.debug)

    def test_defaults(self) -> None:
        """An address alone: a debug server without metrics, the path defaulted."""
        config = load(MINIMAL + "http: {debug: {addr: localhost:5001}}\n")
        self.assertEqual(
            config.http.debug,
            DebugConfig(
                addr="localhost:5001",
                endpoint="tcp:5001:interface=127.0.0.1",
                prometheus_enabled=False,
                prometheus_path="/metrics",
            ),
        )
        self.assertEqual(list(config.warnings), [])

    def test_prometheus(self) -> None:
        """C{prometheus.enabled} and C{prometheus.path}, from the file or the environment."""
        debug = load(
            MINIMAL + "http: {debug: {addr: ':5001', prometheus: {enabled: true, path: /m/x}}}\n"
        ).http.debug
        assert debug is not None
        self.assertEqual(
            (debug.endpoint, debug.prometheus_enabled, debug.prometheus_path),
            ("tcp:5001", True, "/m/x"),
        )
        debug = load(
            MINIMAL,
            REGISTRY_HTTP_DEBUG_ADDR="127.0.0.1:5002",
            REGISTRY_HTTP_DEBUG_PROMETHEUS_ENABLED="true",
        ).http.debug
        assert debug is not None
        self.assertEqual((debug.addr, debug.prometheus_enabled), ("127.0.0.1:5002", True))

    def test_mistakes(self) -> None:
        """Each mistake names its key."""
        for section, key in [
            ("{debug: {prometheus: {enabled: true}}}", "http.debug.addr"),
            ("{debug: {addr: nowhere}}", "http.debug.addr"),
            ("{debug: {addr: ':5001', bogus: 1}}", "http.debug.bogus"),
            ("{debug: {addr: ':5001', prometheus: {bogus: 1}}}", "http.debug.prometheus.bogus"),
            ("{debug: {addr: ':5001', prometheus: {enabled: 3}}}", "http.debug.prometheus.enabled"),
            ("{debug: {addr: ':5001', prometheus: {path: metrics}}}", "http.debug.prometheus.path"),
            ("{debug: [a]}", "http.debug"),
        ]:
            error = self.error(MINIMAL + f"http: {section}\n")
            self.assertEqual(error.key, key, section)
