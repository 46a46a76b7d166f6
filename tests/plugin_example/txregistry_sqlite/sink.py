# -*- test-case-name: tests.test_plugin_example -*-
"""
An event sink (a notifier) that keeps every event as one row of an SQLite
table, C{events(id, action, document)}: what a third party writes to send
txregistry's notifications somewhere other than a webhook (a broker, a
database).

The rules it follows are those of L{txregistry.interfaces.IEventSink}: it
stores a batch or fails, and the registry hands a failed batch again; an
event handed twice (after a crash) is stored once, by its id.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from txregistry.config import ConfigError
from txregistry.interfaces import IEventSink, IEventSinkFactory
from txregistry.threads import in_thread


@implementer(IEventSink)
class SqliteEventSink:
    """Stores events in the SQLite database at C{path}."""

    def __init__(self, path: str) -> None:
        self._connection = sqlite3.connect(path, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._connection:
            self._connection.execute(
                "CREATE TABLE IF NOT EXISTS events"
                " (id TEXT PRIMARY KEY, action TEXT NOT NULL, document TEXT NOT NULL)"
            )

    def write(self, events: Sequence[Mapping[str, Any]]) -> Deferred[None]:
        """See L{IEventSink.write}: one transaction, in the thread pool."""
        rows = [(event["id"], event["action"], json.dumps(event)) for event in events]

        def store() -> None:
            with self._lock, self._connection:
                self._connection.executemany(
                    "INSERT OR IGNORE INTO events (id, action, document) VALUES (?, ?, ?)", rows
                )

        return in_thread(store)

    def close(self) -> Deferred[None]:
        """See L{IEventSink.close}."""
        with self._lock:
            self._connection.close()
        return succeed(None)


@implementer(IEventSinkFactory)
class SqliteEventSinkFactory:
    """Makes L{SqliteEventSink}s: the sink named C{sqlite}, which takes the option C{path}."""

    name = "sqlite"

    def create(self, endpoint: Any) -> IEventSink:
        """See L{IEventSinkFactory.create}."""
        options = dict(endpoint.options)
        path = options.pop("path", None)
        for key in options:
            raise ConfigError(f"options.{key}", "unknown key")
        if not isinstance(path, str) or not path:
            raise ConfigError("options.path", "the database's path is required")
        return SqliteEventSink(path)
