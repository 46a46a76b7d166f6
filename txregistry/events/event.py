# -*- test-case-name: tests.test_events -*-
"""
Distribution's event documents (C{notifications/event.go}) and their
envelope: what a webhook receives.
"""

from __future__ import annotations

import functools
import itertools
import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import orjson

from txregistry.digest import Digest

# The envelope's media type, as Distribution's EventsMediaType.
EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
# The media type of a blob's target, as Distribution gives it.
BLOB_MEDIA_TYPE = "application/octet-stream"

PULL = "pull"
PUSH = "push"
MOUNT = "mount"
DELETE = "delete"
ACTIONS = (PULL, PUSH, MOUNT, DELETE)


class RequestRecord:
    """
    The request an event comes from (Distribution's RequestRecord).  Its
    id and JSON are made when an event of it is first encoded (pulls are
    encoded together, after their requests), then kept: every event of
    the request carries the same.
    """

    __slots__ = ("_encoded", "_id", "addr", "host", "method", "useragent")

    def __init__(
        self, addr: str, host: str, method: str, useragent: str, id: str | None = None
    ) -> None:
        self._id = id
        self.addr = addr
        self.host = host
        self.method = method
        self.useragent = useragent
        self._encoded: bytes | None = None

    @property
    def id(self) -> str:
        """The request's id: a UUID, unless given."""
        if self._id is None:
            self._id = new_id()
        return self._id

    @property
    def encoded(self) -> bytes:
        """As events carry it."""
        if self._encoded is None:
            self._encoded = orjson.dumps(
                {
                    "id": self.id,
                    "addr": self.addr,
                    "host": self.host,
                    "method": self.method,
                    "useragent": self.useragent,
                }
            )
        return self._encoded


@dataclass(frozen=True)
class Source:
    """
    The registry an event comes from (Distribution's SourceRecord): its
    host's name and its instance's id (a UUID made at start-up).
    """

    addr: str
    instance_id: str

    @classmethod
    def here(cls) -> Source:
        """This process."""
        return cls(socket.gethostname(), new_id())

    @functools.cached_property
    def encoded(self) -> bytes:
        """As events carry it (made once)."""
        return orjson.dumps({"addr": self.addr, "instanceID": self.instance_id})


class _Ids:
    """
    Event and request ids: UUIDs (version 4 in form), unique per process
    by a counter over 62 random bits drawn at start-up and per start by 60
    more: C{uuid.uuid4} reads the kernel's random source for each, which
    cost a tenth of a manifest GET's time.
    """

    def __init__(self) -> None:
        high = secrets.randbits(60)
        # The first three groups: the random start-up bits, and the version.
        self._prefix = f"{high >> 28:08x}-{(high >> 12) & 0xFFFF:04x}-4{high & 0xFFF:03x}-"
        self._counter = itertools.count(secrets.randbits(62))

    def next(self) -> str:
        # The variant's bits (10), then the counter's 62: the last two groups.
        low = f"{(1 << 63) | (next(self._counter) & ((1 << 62) - 1)):016x}"
        return f"{self._prefix}{low[:4]}-{low[4:]}"


new_id = _Ids().next


@functools.lru_cache(maxsize=4)
def _whole_seconds(whole: int) -> str:
    """The date and time of C{whole} seconds: one formatting per second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


def timestamp(seconds: float) -> str:
    """RFC 3339 with nanoseconds, UTC, as Go's time.Time encodes."""
    whole = int(seconds)
    nanoseconds = round((seconds - whole) * 1e9)
    if nanoseconds >= 1_000_000_000:
        whole, nanoseconds = whole + 1, nanoseconds - 1_000_000_000
    text = _whole_seconds(whole)
    if nanoseconds:
        text += "." + f"{nanoseconds:09d}".rstrip("0")
    return text + "Z"


_NO_ACTOR = b"{}"
_ACTION_JSON = {action: orjson.dumps(action) for action in ACTIONS}


def encode_event(
    action: str,
    target: Mapping[str, Any],
    request: RequestRecord,
    actor: str | None,
    source: Source,
    now: float | None = None,
) -> bytes:
    """
    One event as JSON, with a fresh id (kept across retries: receivers
    dedupe by it), in Distribution's order of fields.  The request's and
    the source's JSON are made once and spliced in: an event is made for
    every manifest GET, and making and encoding its whole document cost
    twice as much.
    """
    return (
        b'{"id":"%s","timestamp":"%s","action":%s,"target":%s,"request":%s,"actor":%s,"source":%s}'
        % (
            new_id().encode("ascii"),
            timestamp(time.time() if now is None else now).encode("ascii"),
            _ACTION_JSON.get(action) or orjson.dumps(action),
            orjson.dumps(target),
            request.encoded,
            orjson.dumps({"name": actor}) if actor else _NO_ACTOR,
            source.encoded,
        )
    )


def descriptor(media_type: str, size: int, digest: Digest) -> dict[str, Any]:
    """A descriptor as Distribution's JSON has it."""
    return {"mediaType": media_type, "size": size, "digest": str(digest)}


def content_target(
    repository: str,
    media_type: str,
    size: int,
    digest: Digest,
    url: str,
    tag: str | None = None,
    references: Sequence[Mapping[str, Any]] | None = None,
    from_repository: str | None = None,
) -> dict[str, Any]:
    """
    The target of a push, pull or mount of a manifest or blob: its
    descriptor, C{length} (Distribution's older name for the size), the
    repository, the URL it is fetched at, and where given the tag, the
    references (C{notifications.events.includereferences}) and the
    repository a mount came from.
    """
    target = {
        **descriptor(media_type, size, digest),
        "length": size,
        "repository": repository,
    }
    if from_repository:
        target["fromRepository"] = from_repository
    target["url"] = url
    if tag:
        target["tag"] = tag
    if references:
        target["references"] = [dict(reference) for reference in references]
    return target


def deletion_target(
    repository: str, digest: Digest | None = None, tag: str | None = None
) -> dict[str, Any]:
    """The target of a delete: the repository and the digest, or the tag."""
    target: dict[str, Any] = {}
    if digest is not None:
        target["digest"] = str(digest)
    target["repository"] = repository
    if tag:
        target["tag"] = tag
    return target


class EncodedEvents(Sequence[Mapping[str, Any]]):
    """
    Events as the outbox hands them to a sink: their JSON lines, in
    C{encoded} (a sink that sends JSON sends these bytes, and encodes
    nothing again), each parsed only when a sink reads it as a mapping
    (the webhook never does).
    """

    def __init__(self, encoded: list[bytes] | None = None) -> None:
        self.encoded: list[bytes] = [] if encoded is None else encoded

    def __len__(self) -> int:
        return len(self.encoded)

    @overload
    def __getitem__(self, index: int) -> Mapping[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Mapping[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [orjson.loads(line) for line in self.encoded[index]]
        return orjson.loads(self.encoded[index])


def envelope(events: Sequence[Mapping[str, Any]]) -> bytes:
    """The body a webhook receives."""
    if isinstance(events, EncodedEvents):
        return b'{"events":[' + b",".join(events.encoded) + b"]}"
    return orjson.dumps({"events": list(events)})
