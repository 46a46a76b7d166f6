# -*- test-case-name: tests.test_logs -*-
"""
The registry's log output, as the C{log} section configures it: the level,
the formatter (text, json or logstash, as Distribution's logrus writes them)
and fields added to every line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import IO, Any

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogLevel,
    formatEvent,
    formatEventAsClassicLogText,
)

from txregistry.config import LogConfig

_LEVELS: dict[str, LogLevel] = {
    "trace": LogLevel.debug,
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
    "fatal": LogLevel.critical,
    "panic": LogLevel.critical,
}
_NAMES = {
    LogLevel.debug: "debug",
    LogLevel.info: "info",
    LogLevel.warn: "warning",
    LogLevel.error: "error",
    LogLevel.critical: "fatal",
}


def log_level(config: LogConfig) -> LogLevel:
    """The Twisted log level for C{log.level}."""
    return _LEVELS[config.level]


def _structured(event: dict[str, Any], fields: Mapping[str, Any], logstash: bool) -> str:
    message = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        message = f"{message}\n{failure.getTraceback()}"
    level = _NAMES.get(event.get("log_level", LogLevel.info), "info")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(event.get("log_time", time.time())))
    record: dict[str, Any] = dict(fields)
    if logstash:
        record.update(
            {"@timestamp": stamp + "Z", "@version": "1", "level": level, "message": message}
        )
    else:
        record.update({"time": stamp + "Z", "level": level, "msg": message})
    namespace = event.get("log_namespace")
    if namespace:
        record["logger"] = namespace
    return json.dumps(record, default=str) + "\n"


def observer_factory(config: LogConfig) -> Any:
    """
    A factory for C{twist}'s C{fileLogObserverFactory}: given the output
    file, an observer writing lines in the configured format with the
    configured fields.
    """
    fields = dict(config.fields)

    def make(output: IO[str]) -> ILogObserver:
        if config.formatter == "text":
            suffix = "".join(f" {key}={value}" for key, value in fields.items())

            def text(event: dict[str, Any]) -> str | None:
                line = formatEventAsClassicLogText(event)
                if line and suffix:
                    line = line[:-1] + suffix + "\n"
                return line

            return FileLogObserver(output, text)
        logstash = config.formatter == "logstash"
        return FileLogObserver(output, lambda event: _structured(event, fields, logstash))

    return make
