"""
Kill a registry at random moments under concurrent pushes, restart it on the
same storage and check what survived (see L{txregistry.testing.crash}):

    .venv/bin/python scripts/crash_test.py --kills 200 --seed 7
    .venv/bin/python scripts/crash_test.py --kills 50 --seed 7 --fsync --blob-max-kib 4096

Exits 1 when anything failed, naming the seed and round of each failure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from txregistry.testing.crash import CrashHarness, Sizes


def main() -> int:
    """Run the harness as the arguments say; 0 when nothing failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50, help="rounds, each ended by SIGKILL")
    parser.add_argument("--seed", type=int, default=1, help="fixes operations, sizes, kill times")
    parser.add_argument("--workers", type=int, default=4, help="concurrent pushers")
    parser.add_argument("--blob-max-kib", type=int, default=1024, help="largest blob pushed")
    parser.add_argument("--chunk-kib", type=int, default=256, help="largest PATCH")
    parser.add_argument(
        "--window",
        type=float,
        nargs=2,
        default=(0.05, 1.5),
        metavar=("MIN", "MAX"),
        help="seconds a round runs before its kill",
    )
    parser.add_argument(
        "--rotate", type=int, default=10, help="rounds before workers take new repositories"
    )
    parser.add_argument("--fsync", action="store_true", help="storage.filesystem.fsync: true")
    parser.add_argument("--workdir", type=Path, help="where storage goes (a new temporary folder)")
    parser.add_argument("-v", "--verbose", action="store_true", help="a line per round")
    arguments = parser.parse_args()
    workdir = arguments.workdir or Path(tempfile.mkdtemp(prefix="txregistry-crash-"))
    print(f"storage and log in {workdir}", flush=True)
    harness = CrashHarness(
        workdir,
        arguments.seed,
        workers=arguments.workers,
        sizes=Sizes(arguments.blob_max_kib * 1024, arguments.chunk_kib * 1024),
        window=tuple(arguments.window),
        fsync=arguments.fsync,
        rotate=arguments.rotate or None,
        log=(lambda line: print(line, flush=True)) if arguments.verbose else None,
    )
    summary = harness.run(arguments.kills)
    print(summary.text())
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
