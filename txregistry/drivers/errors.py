"""The exceptions a storage driver's Deferreds fail with."""


class StorageDriverError(Exception):
    """Base of every driver error."""


class PathNotFoundError(StorageDriverError):
    """Nothing is stored at the path."""

    def __init__(self, path: str) -> None:
        super().__init__(f"path not found: {path}")
        self.path = path


class InvalidPathError(StorageDriverError):
    """The path breaks the driver path rules."""

    def __init__(self, path: str) -> None:
        super().__init__(f"invalid path: {path!r}")
        self.path = path


class InvalidOffsetError(StorageDriverError):
    """A reader was asked to start at a negative offset."""

    def __init__(self, path: str, offset: int) -> None:
        super().__init__(f"invalid offset {offset} for {path}")
        self.path = path
        self.offset = offset


class StorageUnavailableError(StorageDriverError):
    """The storage backend cannot be reached or refused the request."""


class StorageFullError(StorageDriverError):
    """
    The storage has no room left for a write: the filesystem is full
    (ENOSPC), or the registry's quota is spent (EDQUOT).  Reads still work;
    writes may again once space is freed.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"no room to write {path}: {reason}")
        self.path = path
