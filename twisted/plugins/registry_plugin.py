"""
Twisted plugins shipped by txregistry: the ``twist registry`` service maker and
the built-in storage drivers.

This module is imported whenever anything scans ``twisted.plugins``, so it
imports nothing heavy: every object here names the module that does the work.
"""

from twisted.application.service import ServiceMaker

from txregistry.auth.plugins import LazyAccessControllerFactory
from txregistry.cache.plugins import LazyCacheFactory
from txregistry.drivers.plugins import LazyDriverFactory
from txregistry.events.plugins import LazyEventSinkFactory
from txregistry.middleware.plugins import LazyStorageMiddlewareFactory

registry = ServiceMaker(
    "txregistry",
    "txregistry.service",
    "A container image registry (Docker Registry HTTP API v2 / OCI Distribution 1.1).",
    "registry",
)

filesystemDriver = LazyDriverFactory(
    "filesystem", "txregistry.drivers.filesystem", "FilesystemDriverFactory"
)
inmemoryDriver = LazyDriverFactory(
    "inmemory", "txregistry.drivers.inmemory", "InMemoryDriverFactory"
)
s3Driver = LazyDriverFactory("s3", "txregistry.drivers.s3", "S3DriverFactory")
# Distribution's other name for its s3-aws driver.
s3awsDriver = LazyDriverFactory("s3aws", "txregistry.drivers.s3", "S3DriverFactory")

# Storage middleware: middleware.storage entries name these.
redirectMiddleware = LazyStorageMiddlewareFactory(
    "redirect", "txregistry.middleware.redirect", "RedirectMiddlewareFactory"
)

# Access controllers: the auth section names one of these.
sillyAccessController = LazyAccessControllerFactory(
    "silly", "txregistry.auth.silly", "SillyAccessControllerFactory"
)
htpasswdAccessController = LazyAccessControllerFactory(
    "htpasswd", "txregistry.auth.htpasswd", "HtpasswdAccessControllerFactory"
)
tokenAccessController = LazyAccessControllerFactory(
    "token", "txregistry.auth.token", "TokenAccessControllerFactory"
)

# Event sinks (notifiers): a notifications endpoint's sink key names one.
webhookSink = LazyEventSinkFactory("webhook", "txregistry.events.webhook", "WebhookSinkFactory")

# Blob descriptor caches: storage.cache.blobdescriptor names one.
inmemoryCache = LazyCacheFactory("inmemory", "txregistry.cache.inmemory", "InMemoryCacheFactory")
redisCache = LazyCacheFactory("redis", "txregistry.cache.redis", "RedisCacheFactory")
