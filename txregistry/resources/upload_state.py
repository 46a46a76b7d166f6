# -*- test-case-name: tests.test_upload_state -*-
"""
The C{_state} parameter of upload Location URLs: the upload's name, id and
offset, signed with C{http.secret} so that a client cannot forge it and any
process sharing the secret can check it.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass

import orjson

from txregistry.errors import BLOB_UPLOAD_INVALID

_MAC_LENGTH = 32


@dataclass(frozen=True)
class UploadState:
    """What a Location URL says about an upload."""

    name: str
    upload_id: str
    offset: int
    started_at: str


class UploadStateSigner:
    """Packs and checks L{UploadState}s with one secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, payload: bytes) -> bytes:
        return hmac.digest(self._secret, payload, "sha256")

    def pack(self, state: UploadState) -> str:
        """The signed, URL-safe token for C{state}."""
        # Compact JSON, in Distribution's field order.
        payload = orjson.dumps(
            {
                "Name": state.name,
                "UUID": state.upload_id,
                "Offset": state.offset,
                "StartedAt": state.started_at,
            }
        )
        # Padded, as Distribution's (Go's base64.URLEncoding) is: Distribution
        # rejects an unpadded token, and either registry must accept the
        # other's when they share a secret and storage.
        return base64.urlsafe_b64encode(self._mac(payload) + payload).decode("ascii")

    def unpack(self, token: str) -> UploadState:
        """
        Check and read a token.

        @raise txregistry.errors.RegistryError: BLOB_UPLOAD_INVALID when it
            was not signed with this secret or does not parse.
        """
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError:
            raise BLOB_UPLOAD_INVALID("upload state is not valid base64") from None
        mac, payload = raw[:_MAC_LENGTH], raw[_MAC_LENGTH:]
        if len(mac) != _MAC_LENGTH or not hmac.compare_digest(mac, self._mac(payload)):
            raise BLOB_UPLOAD_INVALID("upload state signature does not match")
        try:
            fields = orjson.loads(payload)
            return UploadState(
                str(fields["Name"]),
                str(fields["UUID"]),
                int(fields["Offset"]),
                str(fields["StartedAt"]),
            )
        except (ValueError, KeyError, TypeError):
            raise BLOB_UPLOAD_INVALID("upload state does not parse") from None
