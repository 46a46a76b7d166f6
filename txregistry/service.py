# -*- test-case-name: tests.test_config,tests.test_tls -*-
"""
C{twist registry}: the command-line options and C{makeService}, which wires
the configuration to the plugins, the registry and the site, and listens
(with TLS when C{http.tls} says so).
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.endpoints import UNIXServerEndpoint, serverFromString
from twisted.internet.interfaces import (
    IReactorProcess,
    IReactorSocket,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.resource import Resource

from txregistry.auth.plugins import access_controller_factories
from txregistry.cache.plugins import build_cache
from txregistry.config import Config, ConfigError
from txregistry.config.http import DebugConfig
from txregistry.configured import build_driver, read_config
from txregistry.debug import (
    CacheCollector,
    DebugRoot,
    DebugSite,
    MetricsResource,
    NotificationsCollector,
    RegistryMetrics,
    TotalsCollector,
)
from txregistry.debug.workers import (
    METRICS_FOLDER_VARIABLE,
    SummedMetricsResource,
    worker_socket,
)
from txregistry.drivers.base import ValidatingDriver
from txregistry.events.notifier import Notifications
from txregistry.health import HealthChecks, HealthResource, build_health_checks
from txregistry.interfaces import IAccessController, ICache, IStorageDriver
from txregistry.logs import log_level, observer_factory
from txregistry.memory import limit_malloc_arenas
from txregistry.proxy.registry import ProxyRegistry
from txregistry.registry.gc import CollectionOptions, CollectionTotals, scheduled_collection
from txregistry.registry.manifests import URLPolicy
from txregistry.registry.purge import scheduled_purge
from txregistry.registry.repository import Registry
from txregistry.resources.site import RegistrySite, make_site
from txregistry.scheduled import ScheduledJob
from txregistry.tls import TLSServerEndpoint, tls_options
from txregistry.workers import (
    WORKER_VARIABLE,
    ReusePortEndpoint,
    TCPAddress,
    WorkerSupervisor,
    is_worker,
    worker_command,
)

_log = Logger()


class Options(usage.Options):
    """C{twist registry [--config FILE] [--listen ENDPOINT]}."""

    optParameters = [
        [
            "config",
            "c",
            None,
            "Configuration file in Distribution's format (default: $REGISTRY_CONFIGURATION_PATH, "
            "else the embedded default: filesystem storage under ./registry-data, port 5000).",
        ],
        [
            "workers",
            "w",
            1,
            "Processes sharing the port (0: one per CPU); needs a fixed TCP port.",
            int,
        ],
        [
            "listen",
            "l",
            None,
            "Twisted endpoint to listen on, overriding http.addr "
            "(e.g. tcp:5000:interface=127.0.0.1).",
        ],
    ]


class RegistryService(StreamServerEndpointService):
    """
    Listens for the site, and runs the scheduled maintenance C{jobs}; on
    stop, closes the port and stops the jobs, then waits up to
    C{drain_timeout} seconds for requests in progress (C{http.draintimeout}).
    """

    def __init__(
        self,
        endpoint: Any,
        site: RegistrySite,
        drain_timeout: float,
        jobs: Sequence[ScheduledJob] = (),
        notifications: Notifications | None = None,
        health: HealthChecks | None = None,
    ) -> None:
        super().__init__(endpoint, site)
        self.site = site
        self.drain_timeout = drain_timeout
        self.jobs = tuple(jobs)
        self.notifications = notifications
        self.health = health

    def startService(self) -> None:
        """Deliver events, run the health checks, listen, and schedule the jobs."""
        if self.health is not None:
            self.health.start()
        if self.notifications is not None:
            self.notifications.start()
        registry = self.site.app.registry
        if isinstance(registry, ProxyRegistry):
            ensureDeferred(registry.start()).addErrback(
                lambda failure: _log.failure("starting the cache's expiry failed", failure)
            )
        super().startService()
        for job in self.jobs:
            job.startService()

    def stopService(self) -> Deferred[None]:
        """Stop listening and the jobs, then drain, then stop delivering events."""
        stopped: Deferred[None] = super().stopService()
        if self.health is not None:
            self.health.stop()
        jobs = [job.stopService() for job in self.jobs if job.running]
        if jobs:
            stopped.addCallback(lambda _: DeferredList(jobs)).addCallback(lambda _: None)
        if self.drain_timeout > 0:
            app = self.site.app
            stopped.addCallback(lambda _: app.wait_idle(self.drain_timeout, reactor))
        notifications = self.notifications
        if notifications is not None:
            stopped.addCallback(lambda _: notifications.stop()).addCallback(lambda _: None)
        cache = self.site.app.registry.descriptor_cache
        stopped.addCallback(lambda _: cache.close()).addCallback(lambda _: None)
        registry = self.site.app.registry
        if isinstance(registry, ProxyRegistry):
            stopped.addCallback(lambda _: ensureDeferred(registry.stop()))
        return stopped


def _given(flag: str, argv: list[str]) -> bool:
    return any(arg == flag or arg.startswith(flag + "=") for arg in argv)


def _apply_logging(options: Options, config: Config, argv: list[str]) -> None:
    # twist starts logging after makeService returns, from its own options:
    # the config's level and format apply unless given on twist's command line.
    twist = getattr(options, "parent", None)
    if twist is None:
        return
    if not _given("--log-level", argv):
        twist["logLevel"] = log_level(config.log)
    if not _given("--log-format", argv):
        twist["fileLogObserverFactory"] = observer_factory(config.log)


def _notifications(config: Config) -> Notifications | None:
    """
    The notifications of the C{notifications} section, their outbox read,
    when it has an endpoint that is not disabled.
    """
    if not config.notifications.enabled_endpoints():
        return None
    notifications = Notifications(config.notifications, reactor)
    try:
        notifications.open()
    except OSError as error:
        raise ConfigError(
            "notifications.outbox.path", f"{notifications.outbox.path}: {error.strerror}"
        ) from None
    return notifications


def _access_controller(config: Config) -> IAccessController | None:
    """The controller the C{auth} section names, made from its options."""
    if config.auth is None:
        return None
    factories = access_controller_factories()
    factory = factories.get(config.auth.name)
    if factory is None:
        raise ConfigError(
            f"auth.{config.auth.name}",
            f"unknown access controller (installed: {', '.join(sorted(factories))})",
        )
    return factory.create(config.auth.options)


def maintenance_jobs(
    config: Config,
    driver: IStorageDriver,
    cache: ICache | None = None,
    gc_totals: CollectionTotals | None = None,
) -> list[ScheduledJob]:
    """
    What the server runs on a schedule: upload purging (on by default, as in
    Distribution) and garbage collection (C{storage.gc}, emptying C{cache}
    when it deleted anything); neither in
    read-only mode.  Each process of C{--workers} runs them; collectors take
    turns through a lease in storage.  The first run waits a random while:
    from five minutes to an hour, or one interval when that is shorter.
    """
    storage = config.storage
    if storage.readonly:
        return []
    jobs = []
    purging = storage.upload_purging
    if purging.enabled:
        jobs.append(
            ScheduledJob(
                "upload purging",
                scheduled_purge(driver, purging.age, purging.dry_run),
                purging.interval,
                _jitter(purging.interval),
                reactor,
            )
        )
    gc = storage.gc
    if gc.enabled:
        options = CollectionOptions(
            dry_run=gc.dry_run, delete_untagged=gc.delete_untagged, min_age=gc.min_age
        )
        jobs.append(
            ScheduledJob(
                "garbage collection",
                scheduled_collection(driver, options, reactor, cache, gc_totals),
                gc.interval,
                _jitter(gc.interval),
                reactor,
            )
        )
    return jobs


def _jitter(interval: float) -> float:
    # Not at once (processes started together spread out), not in the first
    # five minutes (a process that is restarting, or a test's, does no
    # maintenance), and within the hour, as Distribution's purger.
    return random.uniform(min(interval, 300.0), min(interval, 3600.0))


def debug_service(
    debug: DebugConfig, metrics: RegistryMetrics | None, workers_folder: str | None = None
) -> tuple[IService, DebugRoot]:
    """
    The debug server of C{http.debug}, serving C{metrics} if given (summed
    with those of the workers whose sockets are in C{workers_folder}, if
    given), and its root, on which other pages may be mounted before it
    starts.

    @raise ConfigError: for an address Twisted cannot listen on.
    """
    root = DebugRoot()
    if metrics is not None:
        page: Resource = (
            MetricsResource(metrics.registry)
            if workers_folder is None
            else SummedMetricsResource(metrics.registry, workers_folder)
        )
        root.mount(debug.prometheus_path, page)
    try:
        endpoint = serverFromString(reactor, debug.endpoint)
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError("http.debug.addr", f"{debug.addr!r}: {error}") from None
    return StreamServerEndpointService(endpoint, DebugSite(root)), root


def worker_metrics_service(folder: str, metrics: RegistryMetrics) -> IService:
    """A worker's metrics, on its socket in C{folder} (see L{txregistry.debug.workers})."""
    path = worker_socket(folder, os.environ[WORKER_VARIABLE])
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by the worker this one replaces
    root = DebugRoot()
    root.mount("/metrics", MetricsResource(metrics.registry))
    endpoint = UNIXServerEndpoint(reactor, path, mode=0o600, wantPID=False)
    return StreamServerEndpointService(endpoint, DebugSite(root))


def registry_metrics(
    driver: ValidatingDriver,
    registry: Registry,
    site: RegistrySite,
    notifications: Notifications | None,
    gc_totals: CollectionTotals,
) -> RegistryMetrics:
    """The metrics of one registry service, its parts wired to feed them."""
    metrics = RegistryMetrics()
    site.app.metrics = metrics.http
    driver.metrics.observe = metrics.storage.observer(driver.name)
    metrics.watch(CacheCollector(registry.descriptor_cache))
    if notifications is not None:
        metrics.watch(NotificationsCollector(lambda: notifications.counters))
    gc_counters = [
        ("txregistry_gc_runs", "Garbage collections this process made.", "runs"),
        ("txregistry_gc_failures", "Garbage collections that failed.", "failures"),
        ("txregistry_gc_blobs_deleted", "Blobs garbage collection deleted.", "blobs_deleted"),
        ("txregistry_gc_freed_bytes", "Bytes garbage collection freed.", "bytes_freed"),
    ]
    metrics.watch(TotalsCollector(gc_totals, gc_counters))
    upload_counters = [
        ("txregistry_upload_bytes", "Bytes received into uploads.", "bytes_received")
    ]
    metrics.watch(TotalsCollector(registry.upload_totals, upload_counters))
    return metrics


def build_service(
    config: Config,
    listen: str | None = None,
    workers: int = 1,
    argv: list[str] | None = None,
) -> IService:
    """
    The registry service for C{config}, listening where it says; with
    C{workers} above 1, this process and C{workers - 1} more, started with
    C{argv}, share the port (see L{txregistry.workers}).
    """
    driver = build_driver(config)
    validation = config.validation
    options: dict[str, Any] = {
        "delete_enabled": config.storage.delete_enabled,
        "readonly": config.storage.readonly,
        "url_policy": URLPolicy.from_config(
            validation.disabled, list(validation.url_allow), list(validation.url_deny)
        ),
        "descriptor_cache": build_cache(config),
    }
    registry: Registry
    if config.proxy is not None:
        registry = ProxyRegistry(driver, config.proxy, reactor, **options)
    else:
        registry = Registry(driver, **options)
    secret = config.http.secret
    if secret is None:
        _log.warn(
            "http.secret is not set: using a random secret; upload URLs will not "
            "work across processes or restarts"
        )
        secret = secrets.token_hex(32)
    site = make_site(config, registry, secret.encode("utf-8"), _access_controller(config))
    notifications = _notifications(config)
    site.app.notifications = notifications
    health = build_health_checks(config, driver, reactor)
    site.app.health = health
    description = listen or config.http.endpoint
    endpoint: Any
    if workers > 1 or is_worker():
        endpoint = ReusePortEndpoint(IReactorSocket(reactor), TCPAddress.from_endpoint(description))
    else:
        try:
            endpoint = serverFromString(reactor, description)
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(
                "--listen" if listen else "http.addr", f"{description!r}: {error}"
            ) from None
    tls = config.http.tls
    if tls is not None:
        endpoint = TLSServerEndpoint(endpoint, tls_options(tls))
        _log.info(
            "serving TLS, {minimum} or higher{clients}",
            minimum=tls.minimum_version,
            clients=", client certificates required" if tls.client_cas else "",
        )
    gc_totals = CollectionTotals()
    service = RegistryService(
        endpoint,
        site,
        config.http.drain_timeout,
        maintenance_jobs(config, driver, registry.descriptor_cache, gc_totals),
        notifications,
        health=health,
    )
    debug = config.http.debug
    parent: IService = service
    metrics = None
    if debug is not None and debug.prometheus_enabled:
        metrics = registry_metrics(driver, registry, site, notifications, gc_totals)
    # Under --workers, the workers serve their metrics on sockets in a folder
    # of the supervisor's, which sums them with its own on the debug address.
    workers_folder = os.environ.get(METRICS_FOLDER_VARIABLE) if is_worker() else None
    if metrics is not None and workers > 1 and not is_worker():
        workers_folder = tempfile.mkdtemp(prefix="txregistry-metrics-")
        reactor.addSystemEventTrigger(  # type: ignore[attr-defined]
            "after", "shutdown", shutil.rmtree, workers_folder, True
        )
    if metrics is not None and workers_folder is not None and is_worker():
        parent = MultiService()
        service.setServiceParent(parent)
        worker_metrics_service(workers_folder, metrics).setServiceParent(parent)
    if debug is not None and not is_worker():
        debugging, debug_root = debug_service(
            debug, metrics, workers_folder if workers > 1 else None
        )
        try:
            # As Distribution's: {} while no check is configured.
            debug_root.mount(
                "/debug/health", HealthResource(health if health is not None else HealthChecks([]))
            )
        except ValueError as error:
            raise ConfigError("http.debug.prometheus.path", str(error)) from None
        parent = MultiService()
        service.setServiceParent(parent)
        debugging.setServiceParent(parent)
    if workers <= 1 or is_worker():
        return parent
    # The workers must sign and check upload state with the same secret.
    environment = {**os.environ, "REGISTRY_HTTP_SECRET": secret}
    if workers_folder is not None:
        environment[METRICS_FOLDER_VARIABLE] = workers_folder
    supervisor = WorkerSupervisor(
        IReactorProcess(reactor),
        IReactorTime(reactor),
        worker_command(argv or sys.argv),
        environment,
        workers - 1,
    )
    both = MultiService()
    parent.setServiceParent(both)
    supervisor.setServiceParent(both)
    return both


def makeService(options: Options) -> IService:
    """Called by C{twist registry}: exits with one line on a config error."""
    limit_malloc_arenas()
    try:
        config = read_config(options["config"])
        _apply_logging(options, config, sys.argv)
        workers = options["workers"] or os.cpu_count() or 1
        if workers < 0:
            raise ConfigError("--workers", "must be 0 (one per CPU) or more")
        service = build_service(config, options["listen"], workers, sys.argv)
    except ConfigError as error:
        sys.stderr.write(f"txregistry: configuration error: {error}\n")
        raise SystemExit(1) from None
    for warning in config.warnings:
        _log.warn("configuration: {warning}", warning=warning)
    _log.info(
        "txregistry serving {driver} storage ({where})",
        driver=config.storage.driver,
        where=_describe(config),
    )
    return service


def _describe(config: Config) -> Any:
    parameters = config.storage.parameters
    return parameters.get("rootdirectory", "") if isinstance(parameters, dict) else ""
