# -*- test-case-name: tests.test_gc_command -*-
"""
The C{txregistry} command, as Distribution's C{registry} binary:
C{txregistry serve}, C{txregistry garbage-collect} and C{txregistry check}.
Each subcommand lives in a module of its own here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from txregistry import __version__


def parser() -> argparse.ArgumentParser:
    """The command line of every subcommand."""
    from txregistry.commands import check, collect, serve

    top = argparse.ArgumentParser(
        prog="txregistry",
        description="A container image registry (Docker Registry HTTP API v2, OCI "
        "Distribution 1.1), and its maintenance commands.",
    )
    top.add_argument("--version", action="version", version=f"txregistry {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve.add_parser(commands)
    collect.add_parser(commands)
    check.add_parser(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run the subcommand C{argv} names; the process's exit status."""
    arguments = parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    status: int = arguments.run(arguments)
    return status
