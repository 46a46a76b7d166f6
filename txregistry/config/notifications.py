# -*- test-case-name: tests.test_config -*-
"""
The C{notifications} section, not implemented yet: refused, since running
without it would lose the events it sends.
"""

from __future__ import annotations

from txregistry.config.core import NOT_YET, Section, Unsupported

SECTION = Section("notifications", Unsupported(f"notifications {NOT_YET}; events would be lost"))
