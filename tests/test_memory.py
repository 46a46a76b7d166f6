"""The malloc arena cap (see L{txregistry.memory})."""

from __future__ import annotations

import subprocess
import sys

from txregistry.memory import limit_malloc_arenas


def test_cap_set_on_glibc() -> None:
    """On glibc (this project's Debian), mallopt takes the cap."""
    code = "from txregistry.memory import limit_malloc_arenas; print(limit_malloc_arenas())"
    output = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout
    assert output.strip() == "True"


def test_user_setting_wins(monkeypatch: object) -> None:
    """C{MALLOC_ARENA_MAX} in the environment is left to glibc."""
    import pytest

    patch: pytest.MonkeyPatch = monkeypatch  # type: ignore[assignment]
    patch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False
