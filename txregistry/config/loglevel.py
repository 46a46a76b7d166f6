# -*- test-case-name: tests.test_config -*-
"""
The top-level C{loglevel} key: Distribution's older spelling of
C{log.level}, which the C{log} section reads when C{log.level} is not set.
"""

from __future__ import annotations

from txregistry.config.core import Section

SECTION = Section("loglevel", str)
