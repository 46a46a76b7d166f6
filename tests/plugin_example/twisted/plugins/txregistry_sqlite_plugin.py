"""
The C{sqlite} storage driver as a Twisted plugin, so that the registry finds
it by the name in its config: C{storage: {sqlite: {path: /var/lib/registry.db}}}.

Twisted imports every module in C{twisted/plugins/} whenever anything looks
for plugins, so this one imports nothing heavy: the driver module is imported
when a driver is made.  This folder has no C{__init__.py}: one would hide
Twisted's own plugins.
"""

from txregistry.drivers.plugins import LazyDriverFactory
from txregistry.events.plugins import LazyEventSinkFactory

sqliteDriver = LazyDriverFactory("sqlite", "txregistry_sqlite.driver", "SqliteDriverFactory")

# An event sink: a notifications endpoint with "sink: sqlite" stores its events
# in a table of a database ("options: {path: ...}").
sqliteEventSink = LazyEventSinkFactory("sqlite", "txregistry_sqlite.sink", "SqliteEventSinkFactory")
