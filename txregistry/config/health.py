# -*- test-case-name: tests.test_config -*-
"""
The C{health} section, not implemented yet: ignored with a warning, since
without its checks the registry only reports less.
"""

from __future__ import annotations

from txregistry.config.core import Ignored, Section

SECTION = Section("health", Ignored("health checks are not implemented yet; ignored"))
