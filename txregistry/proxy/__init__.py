# -*- test-case-name: tests.test_proxy_upstream -*-
"""
The pull-through cache (Distribution's C{proxy} mode): a registry that
serves what another, its upstream, holds, keeping a copy.  The upstream
client is L{txregistry.proxy.upstream}.
"""
