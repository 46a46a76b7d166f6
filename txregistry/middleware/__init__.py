"""
Middleware: plugins that wrap one of the registry's parts to change what it
does, configured by Distribution's C{middleware} section.  Storage middleware
(L{txregistry.interfaces.IStorageMiddlewareFactory}) wraps the storage
driver; the built-in C{redirect} sends blob downloads to another URL.
"""
