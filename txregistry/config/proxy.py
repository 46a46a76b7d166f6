# -*- test-case-name: tests.test_config -*-
"""
The C{proxy} section, not implemented yet: refused, since a registry meant
as a pull-through cache would otherwise serve only what was pushed to it.
"""

from __future__ import annotations

from txregistry.config.core import NOT_YET, Section, Unsupported

SECTION = Section("proxy", Unsupported(f"the pull-through cache {NOT_YET}"))
