# -*- test-case-name: tests.test_check -*-
"""
C{txregistry check [--repair] [--parallel N] [--quiet|-q] CONFIG}: verify
every blob's content and every link of the storage the config names, on any
storage driver (see L{txregistry.registry.check}).  Exits 0 when nothing is
wrong, 1 when something is (or the check failed), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from txregistry.commands.running import open_configured, report_failure, run_in_reactor
from txregistry.commands.terminal import TerminalReporter


def add_parser(commands: Any) -> None:
    """Add C{check} to the subcommands."""
    command = commands.add_parser(
        "check",
        help="verify blobs' content and the links between repositories, manifests and blobs",
        description="Hash every blob, read every link and every manifest, and report what is "
        "wrong, one line each. Exits 0 when nothing is, 1 when something is.",
    )
    command.add_argument("config", nargs="?", help="configuration file in Distribution's format")
    command.add_argument(
        "--repair",
        action="store_true",
        help="move corrupt blobs aside (so that a push stores them again) and delete dangling "
        "links; nothing else is changed",
    )
    command.add_argument(
        "--parallel",
        type=int,
        default=16,
        metavar="N",
        help="storage requests and blob reads in flight at once (default 16)",
    )
    command.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    command.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    """Check as C{arguments} say; 0 when nothing is wrong, 1 otherwise, 2 for bad arguments."""
    if arguments.parallel < 1:
        sys.stderr.write("txregistry: --parallel: must be at least 1\n")
        return 2
    reporter = TerminalReporter(sys.stdout, sys.stderr, quiet=arguments.quiet)
    return run_in_reactor(
        lambda reactor: check_storage(
            arguments.config, arguments.repair, arguments.parallel, reporter
        )
    )


async def check_storage(
    config_path: str | None, repair: bool, parallelism: int, reporter: TerminalReporter
) -> int:
    """
    Check the storage the config at C{config_path} names, reporting to
    C{reporter}, the summary last on standard output.

    @return: the exit status: 0 when nothing is wrong, 1 when something is
        or the check failed (said in one line on standard error).
    """
    from txregistry.registry.check import StorageChecker

    opened = open_configured(config_path)
    if opened is None:
        return 1
    config, driver = opened
    checker = StorageChecker(
        driver, repair, parallelism, reporter, pull_through=config.proxy is not None
    )
    try:
        result = await checker.check()
    except Exception as error:  # a storage failure: said in one line, not a traceback
        return report_failure("check", error, reporter)
    reporter.finish()
    print(result.summary(repair), flush=True)
    return 1 if result.problems else 0
