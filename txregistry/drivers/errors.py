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
