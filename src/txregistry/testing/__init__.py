"""
Helpers for testing txregistry and what plugs into it: starting a registry
(ours or Distribution's reference binary) as a process on loopback, and a
small blocking HTTP client for talking to it.
"""
