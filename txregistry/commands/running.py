# -*- test-case-name: tests.test_gc_command,tests.test_check -*-
"""
What the maintenance subcommands share: opening the storage a config
names, running their work in a reactor with the process's exit status, and
saying a failure in one line rather than a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from txregistry.commands.terminal import TerminalReporter
from txregistry.interfaces import ICache, IStorageDriver

if TYPE_CHECKING:
    from txregistry.config import Config


def run_in_reactor(work: Callable[[Any], Awaitable[int]]) -> int:
    """
    Run C{work(reactor)} and end the process with the status it returns
    (C{react} exits: 0, or the status of a C{SystemExit}).
    """
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import react

    async def main(reactor: Any) -> None:
        status = await work(reactor)
        if status:
            raise SystemExit(status)

    react(lambda reactor: ensureDeferred(main(reactor)))
    return 0


def open_storage(config_path: str | None) -> IStorageDriver | None:
    """
    The storage the config at C{config_path} (or the environment's, or the
    embedded default) names; L{None}, said on standard error, for a
    configuration mistake.
    """
    opened = open_configured(config_path)
    return None if opened is None else opened[1]


def open_configured(config_path: str | None) -> tuple[Config, IStorageDriver] | None:
    """Like L{open_storage}, with the configuration read."""
    from txregistry.config import ConfigError
    from txregistry.configured import build_driver, read_config

    try:
        config = read_config(config_path)
        return config, build_driver(config)
    except ConfigError as error:
        sys.stderr.write(f"txregistry: configuration error: {error}\n")
        return None


def open_storage_and_cache(
    config_path: str | None,
) -> tuple[IStorageDriver, ICache | None] | None:
    """
    Like L{open_storage}, with the descriptor cache the config names (for
    a command that must empty it).
    """
    from txregistry.cache.plugins import build_cache
    from txregistry.config import ConfigError
    from txregistry.configured import build_driver, read_config

    try:
        config = read_config(config_path)
        return build_driver(config), build_cache(config)
    except ConfigError as error:
        sys.stderr.write(f"txregistry: configuration error: {error}\n")
        return None


def report_failure(
    what: str,
    error: Exception,
    reporter: TerminalReporter,
    plain: tuple[type[Exception], ...] = (OSError,),
) -> int:
    """
    Say on standard error that C{what} failed, in one line: the message of
    an error of the C{plain} kinds, else its type too; the exit status, 1.
    """
    reporter.finish()
    described = str(error) if isinstance(error, plain) else f"{type(error).__name__}: {error}"
    sys.stderr.write(f"txregistry: failed to {what}: {described}\n")
    return 1
