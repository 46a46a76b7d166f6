# -*- test-case-name: tests.test_gc_command -*-
"""
What a maintenance command prints: its account line by line on standard
output, and, when standard error is a terminal, one progress line there,
rewritten in place at most a few times a second.
"""

from __future__ import annotations

import time
from typing import TextIO


class TerminalReporter:
    """
    A reporter (see L{txregistry.registry.gc.Reporter}) for a command.

    @param quiet: print no account lines (the summary is the command's).
    """

    def __init__(
        self, output: TextIO, errors: TextIO, quiet: bool = False, interval: float = 0.2
    ) -> None:
        self.output = output
        self.errors = errors
        self.quiet = quiet
        self.interval = interval
        self._shows_progress = errors.isatty()
        self._last = 0.0
        self._progress_shown = False

    def line(self, text: str) -> None:
        """Print one line of the account, unless quiet."""
        if self.quiet:
            return
        self._clear_progress()
        print(text, file=self.output, flush=self._shows_progress)

    def progress(self, phase: str, done: int, total: int) -> None:
        """Show C{phase: done/total} on the terminal, if there is one."""
        if not self._shows_progress:
            return
        now = time.monotonic()
        if now - self._last < self.interval and done < total:
            return
        self._last = now
        self.errors.write(f"\r\x1b[K{phase}: {done}/{total}")
        self.errors.flush()
        self._progress_shown = True

    def _clear_progress(self) -> None:
        if self._progress_shown:
            self.errors.write("\r\x1b[K")
            self.errors.flush()
            self._progress_shown = False

    def finish(self) -> None:
        """Take the progress line away before the command's last words."""
        self._clear_progress()
