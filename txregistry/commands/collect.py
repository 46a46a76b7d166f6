# -*- test-case-name: tests.test_gc_command -*-
"""
C{txregistry garbage-collect [--dry-run|-d] [--delete-untagged|-m]
[--quiet|-q] [--min-age DURATION] CONFIG}: Distribution's command and flags,
on any storage driver (see L{txregistry.registry.gc}).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from txregistry.commands.running import open_storage_and_cache, report_failure, run_in_reactor
from txregistry.commands.terminal import TerminalReporter


def add_parser(commands: Any) -> None:
    """Add C{garbage-collect} to the subcommands."""
    command = commands.add_parser(
        "garbage-collect",
        help="delete blobs (and, with -m, manifests) that nothing references",
        description="Mark every manifest of every repository and what it references, then "
        "delete the blobs nobody marked. Safe beside serving registries: nothing younger "
        "than --min-age is deleted.",
    )
    command.add_argument("config", nargs="?", help="configuration file in Distribution's format")
    command.add_argument("--config", dest="config_option", metavar="CONFIG", help=argparse.SUPPRESS)
    command.add_argument(
        "-d", "--dry-run", action="store_true", help="say what would be deleted, delete nothing"
    )
    command.add_argument(
        "-m",
        "--delete-untagged",
        action="store_true",
        help="also delete manifests no tag reaches (never an image a kept index lists, nor a "
        "referrer of a kept manifest)",
    )
    command.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    command.add_argument(
        "--min-age",
        default="1h",
        help='delete nothing written more recently than this (a Go duration: "1h", "90s"; '
        "default 1h)",
    )
    command.add_argument(
        "--parallel", type=int, default=16, help="storage requests in flight at once (default 16)"
    )
    command.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    """Collect as C{arguments} say; 0 when done, 1 on any failure (said on standard error)."""
    from txregistry.config import ConfigError, parse_duration
    from txregistry.registry.gc import CollectionOptions

    try:
        min_age = parse_duration("--min-age", arguments.min_age)
        if arguments.parallel < 1:
            raise ConfigError("--parallel", "must be at least 1")
    except ConfigError as error:
        sys.stderr.write(f"txregistry: {error}\n")
        return 2
    options = CollectionOptions(
        dry_run=arguments.dry_run,
        delete_untagged=arguments.delete_untagged,
        min_age=min_age,
        parallelism=arguments.parallel,
    )
    reporter = TerminalReporter(sys.stdout, sys.stderr, quiet=arguments.quiet)
    config_path = arguments.config_option or arguments.config
    return run_in_reactor(lambda reactor: _collect(reactor, config_path, options, reporter))


async def _collect(
    reactor: Any, config_path: str | None, options: Any, reporter: TerminalReporter
) -> int:
    from txregistry.registry import paths
    from txregistry.registry.gc import CollectionError, GarbageCollector, forget_collected
    from txregistry.registry.lease import StorageLease

    opened = open_storage_and_cache(config_path)
    if opened is None:
        return 1
    driver, cache = opened
    try:
        collector = GarbageCollector(
            driver, options, StorageLease(driver, paths.gc_lease(), reactor), reporter
        )
        try:
            result = await collector.collect()
        except Exception as error:  # a storage failure too: said in one line, not a traceback
            return report_failure("garbage collect", error, reporter, (CollectionError, OSError))
        reporter.finish()
        # The registries' cache (Redis) may know what was deleted.
        for warning in [*result.warnings, *await forget_collected(result, options, cache)]:
            sys.stderr.write(f"txregistry: warning: {warning}\n")
        print(result.summary(options.dry_run), flush=True)
        return 0
    finally:
        if cache is not None:
            await cache.close()
