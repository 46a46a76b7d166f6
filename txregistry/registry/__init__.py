"""The registry's domain: blobs, uploads and repositories over a storage driver.

Nothing here knows about HTTP; errors are L{txregistry.errors.RegistryError}s.
"""
