# -*- test-case-name: tests.test_config -*-
"""
The C{redis} section, not implemented yet: ignored with a warning, since
without the cache the registry is only slower.
"""

from __future__ import annotations

from txregistry.config.core import Ignored, Section

SECTION = Section("redis", Ignored("the Redis cache is not implemented yet; ignored"))
