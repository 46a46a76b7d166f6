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
from typing import Any

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

Event = dict[str, Any]


@dataclass(frozen=True)
class RequestRecord:
    """The request an event comes from (Distribution's RequestRecord)."""

    id: str
    addr: str
    host: str
    method: str
    useragent: str

    def document(self) -> dict[str, str]:
        """As the event carries it."""
        return {
            "id": self.id,
            "addr": self.addr,
            "host": self.host,
            "method": self.method,
            "useragent": self.useragent,
        }


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


class _Ids:
    """
    Event and request ids: UUIDs (version 4 in form), unique per process
    by a counter over 62 random bits drawn at start-up and per start by 60
    more: C{uuid.uuid4} reads the kernel's random source for each, which
    cost a tenth of a manifest GET's time.
    """

    def __init__(self) -> None:
        self._high = secrets.randbits(60)
        self._counter = itertools.count(secrets.randbits(62))

    def next(self) -> str:
        low = next(self._counter) & ((1 << 62) - 1)
        high = self._high
        return (
            f"{high >> 28:08x}-{(high >> 12) & 0xFFFF:04x}-4{high & 0xFFF:03x}-"
            f"{0x8000 | (low >> 48):04x}-{low & 0xFFFFFFFFFFFF:012x}"
        )


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


def make_event(
    action: str,
    target: Mapping[str, Any],
    request: RequestRecord,
    actor: str | None,
    source: Source,
    now: float | None = None,
) -> Event:
    """One event, with a fresh id (kept across retries: receivers dedupe by it)."""
    return {
        "id": new_id(),
        "timestamp": timestamp(time.time() if now is None else now),
        "action": action,
        "target": dict(target),
        "request": request.document(),
        "actor": {"name": actor} if actor else {},
        "source": {"addr": source.addr, "instanceID": source.instance_id},
    }


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


class EncodedEvents(list[Mapping[str, Any]]):
    """
    Events as the outbox hands them to a sink: each event, and in
    C{encoded} the same events as JSON (a sink that sends JSON sends these
    bytes, and encodes nothing again).
    """

    def __init__(self) -> None:
        super().__init__()
        self.encoded: list[bytes] = []


def envelope(events: Sequence[Mapping[str, Any]]) -> bytes:
    """The body a webhook receives."""
    if isinstance(events, EncodedEvents) and len(events.encoded) == len(events):
        return b'{"events":[' + b",".join(events.encoded) + b"]}"
    return orjson.dumps({"events": list(events)})
