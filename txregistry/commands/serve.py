# -*- test-case-name: tests.test_gc_command -*-
"""C{txregistry serve [CONFIG]}: the server, as C{twist registry} runs it."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(commands: Any) -> None:
    """Add C{serve} to the subcommands."""
    command = commands.add_parser(
        "serve",
        help="serve the registry (as twist registry)",
        description="Serve the registry; options after the config file go to twist registry "
        "(--listen, --workers).",
    )
    command.add_argument("config", nargs="?", help="configuration file in Distribution's format")
    command.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    command.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    """Run C{twist registry}, which exits the process when the server stops."""
    from twisted.application.twist._twist import Twist

    given = ["--config", arguments.config] if arguments.config else []
    Twist.main(["twist", "registry", *given, *arguments.rest])
    return 0
