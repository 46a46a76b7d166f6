"""
The blob descriptor cache plugins (L{txregistry.interfaces.ICache}): in
memory, per process (C{inmemory}), and Redis, shared (C{redis}).
"""

# The kinds of entries (see txregistry.interfaces.ICache).
LAYER = "layer"
REVISION = "revision"
