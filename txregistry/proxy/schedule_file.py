# -*- test-case-name: tests.test_proxy_expiry -*-
"""
Distribution's proxy schedule file (C{registry/proxy/scheduler/scheduler.go}):
decoding it, encoding it, and merging the stored file with a process's
entries.

The schedule is kept in storage in Distribution's own file, so a
Distribution proxy's storage keeps its schedule when txregistry serves it,
and the other way round: C{/scheduler-state.json} at the driver's root
(C{registry/proxy/proxyregistry.go}), a JSON object mapping each key to
C{{"Key": key, "ExpiryData": time, "EntryType": 0 or 1}}, where the key is
C{<repository>@<digest>}, the time is Go's C{time.Time} in JSON (RFC 3339
with up to nine fractional digits), and the type is 0 for a blob and 1 for
a manifest.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date
from heapq import heapify
from typing import Any, NamedTuple

from txregistry.digest import Digest
from txregistry.errors import RegistryError
from txregistry.names import check_repository_name

# Where Distribution keeps the schedule: at the driver's root, beside
# docker/ (proxyregistry.go: scheduler.New(ctx, driver, "/scheduler-state.json")).
STATE_PATH = "/scheduler-state.json"

BLOB = "blob"
MANIFEST = "manifest"
# Distribution's EntryType values (entryTypeBlob = iota, entryTypeManifest).
ENTRY_TYPES = {BLOB: 0, MANIFEST: 1}
# The kind, L{BLOB} or L{MANIFEST}, of each EntryType value.
KINDS = {number: kind for kind, number in ENTRY_TYPES.items()}

# Go's time.Time marshals as RFC 3339 with nanoseconds, trailing zeros cut.
_GO_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# The first second Go's MarshalJSON cannot write (year 10000): an expiry
# must be earlier.
LAST_EXPIRY = 253402300800.0


@dataclass(frozen=True)
class ExpiryEntry:
    """
    One scheduled expiry.

    @ivar repository: the repository the content was fetched into.
    @ivar digest: the manifest's or blob's digest.
    @ivar kind: L{BLOB} or L{MANIFEST}.
    @ivar expires: when it is due, in seconds since the epoch.
    """

    repository: str
    digest: Digest
    kind: str
    expires: float

    @property
    def key(self) -> str:
        """Its key in Distribution's file: C{<repository>@<digest>}."""
        return expiry_key(self.repository, self.digest)


def expiry_key(repository: str, digest: Digest) -> str:
    """The key of C{digest} in C{repository}, as Distribution's reference prints it."""
    return f"{repository}@{digest}"


class Slot(NamedTuple):
    """
    An entry in memory, as the file holds it.

    @ivar expires: when it is due, in seconds since the epoch (whole
        microseconds).
    @ivar entry_type: its EntryType, a value of L{ENTRY_TYPES}.
    @ivar stamp: its time as written in the file.
    """

    expires: float
    entry_type: int
    stamp: str


def microseconds(seconds: float) -> int:
    """Epoch seconds as whole epoch microseconds, the precision kept in the file."""
    return round(seconds * 1_000_000)


def slot_at(expires: float, entry_type: int) -> Slot:
    """
    The entry due at C{expires} (epoch seconds, rounded to whole
    microseconds), of EntryType C{entry_type}.
    """
    # Times go through the file as whole microseconds: kept so in memory,
    # they compare equal after a round trip.
    micros = microseconds(expires)
    return Slot(micros / 1_000_000, entry_type, _format_go_time(micros))


def _format_go_time(micros: int) -> str:
    """Epoch microseconds as Go's JSON writes a time, in UTC."""
    seconds, fraction = divmod(micros, 1_000_000)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    day = date.fromordinal(days + _EPOCH_ORDINAL).isoformat()
    text = f"{day}T{hours:02d}:{minutes:02d}:{seconds:02d}"
    if fraction:
        text += "." + f"{fraction:06d}".rstrip("0")
    return text + "Z"


def _parse_go_time(text: str) -> float:
    """
    A time as Go's JSON writes it, in epoch seconds (whole microseconds).

    @raise ValueError: when it is not one.
    """
    found = _GO_TIME.fullmatch(text)
    if found is None:
        raise ValueError(f"not an RFC 3339 time: {text[:64]!r}")
    year, month, day, hours, minutes, seconds, fraction, zone, sign, zone_hours, zone_minutes = (
        found.groups()
    )
    whole = _epoch_day(int(year), int(month), int(day)) * 86400
    whole += _seconds_of_day(int(hours), int(minutes), int(seconds))
    if zone != "Z":
        offset = _seconds_of_day(int(zone_hours), int(zone_minutes), 0)
        whole += offset if sign == "-" else -offset
    return (whole * 1_000_000 + int((fraction or "0").ljust(6, "0")[:6])) / 1_000_000


@functools.lru_cache(maxsize=4096)
def _epoch_day(year: int, month: int, day: int) -> int:
    # Cached: a schedule's entries fall on a few hundred days.
    return date(year, month, day).toordinal() - _EPOCH_ORDINAL


def _seconds_of_day(hours: int, minutes: int, seconds: int) -> int:
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError(f"no time of day: {hours:02d}:{minutes:02d}:{seconds:02d}")
    return hours * 3600 + minutes * 60 + seconds


def parse_key(key: str) -> tuple[str, Digest]:
    """
    A key's repository and digest.

    @raise RegistryError: when it names no valid repository and digest.
    """
    repository, _, digest = key.rpartition("@")
    return _check_name(repository), Digest.parse(digest)


@functools.lru_cache(maxsize=4096)
def _check_name(repository: str) -> str:
    # Cached: a schedule names a few repositories many times.
    return check_repository_name(repository)


class Decoded(NamedTuple):
    """
    What L{decode} read of a file.

    @ivar entries: the entries that differ from this process's, by key.
    @ivar problem: why the whole file was taken as empty, or L{None}.
    @ivar skipped: the keys of entries that could not be read.
    """

    entries: dict[str, Slot]
    problem: str | None
    skipped: list[str]


def _field(document: dict[str, Any], name: str) -> Any:
    # Go's decoder matches field names exactly, else ignoring case.
    if name in document:
        return document[name]
    lowered = name.lower()
    for field, value in document.items():
        if field.lower() == lowered:
            return value
    return None


def decode(content: bytes | None, ours: dict[str, Slot]) -> Decoded:
    """
    The entries of Distribution's file that are not in C{ours} as they are
    (a missing file has none).

    @param content: the file, or L{None} when there is none.
    @param ours: this process's entries, by key.
    """
    if content is None:
        return Decoded({}, None, [])
    try:
        document = json.loads(content)
    except (ValueError, RecursionError) as error:
        return Decoded({}, f"not JSON: {error}", [])
    if document is None:  # what Go writes for a nil map
        return Decoded({}, None, [])
    if not isinstance(document, dict):
        return Decoded({}, "not a JSON object", [])
    entries: dict[str, Slot] = {}
    skipped: list[str] = []
    for name, value in document.items():
        mine = ours.get(name)
        if (
            mine is not None
            and type(value) is dict
            and value.get("ExpiryData") == mine.stamp
            and value.get("EntryType") == mine.entry_type
            and value.get("Key") == name
        ):
            continue  # most of a large file: checked when it came here
        try:
            if not isinstance(value, dict):
                raise ValueError("not an object")
            # The entry's Key is what Distribution expires; the map's key its copy.
            key = _field(value, "Key") or name
            entry_type = _field(value, "EntryType")
            stamp = _field(value, "ExpiryData")
            if not isinstance(key, str) or type(entry_type) is not int:
                raise ValueError("bad key or type")
            if entry_type not in KINDS:
                raise ValueError("unknown type")
            if not isinstance(stamp, str):
                raise ValueError("bad time")
            parse_key(key)
            entries[key] = Slot(_parse_go_time(stamp), entry_type, stamp)
        except (ValueError, RegistryError):
            skipped.append(name)
    return Decoded(entries, None, skipped)


def encode(entries: dict[str, Slot]) -> bytes:
    """
    Entries in Distribution's file format, as Go's encoder writes them: map
    keys sorted, fields in their declared order, no spaces.  Formatted by
    hand, four times as fast as C{json.dumps} of as many dictionaries: every
    key and time was checked against a grammar that needs no escaping.
    """
    parts = []
    for key in sorted(entries):
        slot = entries[key]
        parts.append(
            f'"{key}":{{"Key":"{key}","ExpiryData":"{slot.stamp}","EntryType":{slot.entry_type}}}'
        )
    return ("{" + ",".join(parts) + "}").encode("ascii")


def fingerprint(content: bytes | None) -> bytes | None:
    """The SHA-256 of a file's C{content}, or L{None} when there is no file."""
    return None if content is None else hashlib.sha256(content).digest()


class Merged(NamedTuple):
    """
    The result of L{merge}.

    @ivar content: what to store, when asked to encode; else L{None}.
    @ivar read: the L{fingerprint} of the file as read.
    @ivar written: that of C{content}.
    @ivar adopted: the stored entries that are new to this process, or due
        later than its own.
    @ivar heap: the adopted entries' heap of C{(expires, key)}, when this
        process had no entries; else L{None}.
    @ivar problem: why the whole file was taken as empty, or L{None}.
    @ivar skipped: the keys of stored entries that could not be read.
    """

    content: bytes | None
    read: bytes | None
    written: bytes | None
    adopted: dict[str, Slot]
    heap: list[tuple[float, str]] | None
    problem: str | None
    skipped: list[str]


def merge(
    content: bytes | None,
    known: bytes | None,
    ours: dict[str, Slot],
    removed: dict[str, float],
    write: bool,
) -> Merged:
    """
    Merge the stored file with this process's entries: per key the later
    expiry, without the stored entries this process has removed since (those
    due no later than the one it removed).  A file with fingerprint
    C{known}, the one this process last read or wrote, holds nothing it does
    not know, and is not decoded.  Pure, to run in a thread.

    @param content: the stored file, or L{None} when there is none.
    @param known: the L{fingerprint} of the file as this process last read
        or wrote it.
    @param ours: this process's entries, by key.
    @param removed: the keys this process expired or discarded since, with
        the expiry each had.
    @param write: whether to encode the merge, to be stored.
    """
    read = fingerprint(content)
    if read is not None and read == known:
        stored = Decoded({}, None, [])
    else:
        stored = decode(content, ours)
    adopted: dict[str, Slot] = {}
    for key, slot in stored.entries.items():
        gone = removed.get(key)
        if gone is not None and slot.expires <= gone:
            continue
        mine = ours.get(key)
        if mine is None or slot.expires > mine.expires:
            adopted[key] = slot
    heap = None
    if not ours:
        heap = [(slot.expires, key) for key, slot in adopted.items()]
        heapify(heap)
    encoded = encode({**ours, **adopted}) if write else None
    return Merged(
        encoded, read, fingerprint(encoded), adopted, heap, stored.problem, stored.skipped
    )
