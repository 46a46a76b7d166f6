"""Storage drivers: raw byte stores behind L{txregistry.interfaces.IStorageDriver}."""
