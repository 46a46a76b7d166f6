# -*- test-case-name: tests.test_errors -*-
"""
The registry's error codes, each registered once with its HTTP status and
message (Distribution's ``errcode`` package), and the exception that carries
one to the HTTP layer, which renders it as OCI error JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorCode:
    """One registered error code: its identifier, default status and message."""

    code: str
    status: int
    message: str

    def __call__(
        self,
        detail: Any = None,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> RegistryError:
        """An exception carrying this code, with an optional detail."""
        return RegistryError(self, detail, status=status, headers=headers)


ERROR_CODES: dict[str, ErrorCode] = {}


def register(code: str, status: int, message: str) -> ErrorCode:
    """Register an error code once; a second registration is a bug."""
    if code in ERROR_CODES:
        raise ValueError(f"error code {code} registered twice")
    ERROR_CODES[code] = ErrorCode(code, status, message)
    return ERROR_CODES[code]


class RegistryError(Exception):
    """
    An error the client is told about, as OCI error JSON.

    @ivar error_code: the registered L{ErrorCode}.
    @ivar detail: extra, JSON-serialisable information for the client.
    @ivar status: the HTTP status, normally the code's own.
    @ivar headers: response headers to add (C{Content-Range}, C{Allow}, ...).
    @ivar also: further errors reported in the same response (a manifest
        that references several unknown blobs names each).
    """

    def __init__(
        self,
        error_code: ErrorCode,
        detail: Any = None,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        also: Sequence[RegistryError] = (),
    ) -> None:
        super().__init__(f"{error_code.code}: {error_code.message}")
        self.error_code = error_code
        self.detail = detail
        self.status = error_code.status if status is None else status
        self.headers = dict(headers or {})
        self.also = tuple(also)

    def entry(self) -> dict[str, Any]:
        """This error alone, as one entry of an OCI error document."""
        error: dict[str, Any] = {
            "code": self.error_code.code,
            "message": self.error_code.message,
        }
        if self.detail is not None:
            error["detail"] = self.detail
        return error

    def body(self) -> bytes:
        """The OCI error JSON document for this error and those reported with it."""
        errors = [self.entry(), *(other.entry() for other in self.also)]
        return json.dumps({"errors": errors}).encode("utf-8")


# Distribution's codes (registry/api/errcode and registry/api/v2), with its
# statuses and messages, plus RANGE_INVALID, PAGINATION_NUMBER_INVALID.
UNKNOWN = register("UNKNOWN", 500, "unknown error")
UNSUPPORTED = register("UNSUPPORTED", 405, "The operation is unsupported.")
UNAUTHORIZED = register("UNAUTHORIZED", 401, "authentication required")
DENIED = register("DENIED", 403, "requested access to the resource is denied")
UNAVAILABLE = register("UNAVAILABLE", 503, "service unavailable")
TOOMANYREQUESTS = register("TOOMANYREQUESTS", 429, "too many requests")
DIGEST_INVALID = register("DIGEST_INVALID", 400, "provided digest did not match uploaded content")
SIZE_INVALID = register("SIZE_INVALID", 400, "provided length did not match content length")
RANGE_INVALID = register("RANGE_INVALID", 416, "invalid content range")
NAME_INVALID = register("NAME_INVALID", 400, "invalid repository name")
TAG_INVALID = register("TAG_INVALID", 400, "manifest tag did not match URI")
NAME_UNKNOWN = register("NAME_UNKNOWN", 404, "repository name not known to registry")
MANIFEST_UNKNOWN = register("MANIFEST_UNKNOWN", 404, "manifest unknown")
MANIFEST_INVALID = register("MANIFEST_INVALID", 400, "manifest invalid")
MANIFEST_UNVERIFIED = register("MANIFEST_UNVERIFIED", 400, "manifest failed signature verification")
MANIFEST_BLOB_UNKNOWN = register("MANIFEST_BLOB_UNKNOWN", 400, "blob unknown to registry")
BLOB_UNKNOWN = register("BLOB_UNKNOWN", 404, "blob unknown to registry")
BLOB_UPLOAD_UNKNOWN = register("BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry")
BLOB_UPLOAD_INVALID = register("BLOB_UPLOAD_INVALID", 404, "blob upload invalid")
PAGINATION_NUMBER_INVALID = register(
    "PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested"
)
