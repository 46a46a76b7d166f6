# -*- test-case-name: tests.test_drivers_s3 -*-
"""
Reading a directory of the C{s3} driver's bucket a page at a time, for
L{txregistry.interfaces.IPagedLister}: C{ListObjectsV2} with C{Delimiter}
(a folder comes as one common prefix) from C{StartAfter} on, C{MaxKeys} of
about the page.  Every function here blocks: the driver calls them in the
thread pool.

Keys and names sort differently: the bucket lists a folder C{x} as the key
C{x/}, which sorts after C{x-y/} and C{x.y/} though the name C{x} sorts
before C{x-y} and C{x.y} (C{-} and C{.} sort before C{/}).  So where a
listing stops, only the beginnings of the last name read that end before
such a character (C{1.0} and C{1} of C{1.0-alpine}) may sort before names
it read without being read themselves: each is looked for with a request
of its own, and the page is then in plain string order.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ElementTree
from typing import Any, NamedTuple

from txregistry.drivers.s3_files import is_missing

# The most keys (and common prefixes) one ListObjectsV2 answer holds.
LIST_AT_MOST = 1000
# A listing answers about as fast with a hundred keys as with one: a page
# asks for at least this many, so that the search of marked folders seldom
# needs a folder's second page.
LIST_AT_LEAST = 100
# The longest key, in UTF-8 bytes.
KEY_BYTES = 1024


# Whether this thread's ListObjectsV2 answers are read by _read_names.
_reading_names = threading.local()


def _read_names(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """
    botocore's C{before-parse} hook for the listings of L{children_after}
    (and only those: see L{_list_names}): their keys and common prefixes
    read with ElementTree, and the answer handed to botocore without them.
    botocore's parser takes three to four milliseconds for an answer of
    1 000 prefixes, where this takes about one; only the names are kept
    (C{Key}, C{Prefix}), which is all the listing looks at.  botocore still
    reads the rest (C{IsTruncated}, C{NextContinuationToken}...) and still
    decodes the names it asked to have URL-encoded.
    """
    if not getattr(_reading_names, "on", False) or response_dict.get("status_code", 500) >= 300:
        return
    body = response_dict.get("body")
    if not isinstance(body, bytes):
        return
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return  # botocore's parser says what is wrong with it
    namespace = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    common, contents = f"{namespace}CommonPrefixes", f"{namespace}Contents"
    rest = ElementTree.Element(root.tag)
    prefixes: list[dict[str, str]] = []
    keys: list[dict[str, str]] = []
    for child in root:
        if child.tag == common:
            prefixes.append({"Prefix": child.findtext(f"{namespace}Prefix") or ""})
        elif child.tag == contents:
            keys.append({"Key": child.findtext(f"{namespace}Key") or ""})
        else:
            rest.append(child)
    if prefixes:
        customized_response_dict["CommonPrefixes"] = prefixes
    if keys:
        customized_response_dict["Contents"] = keys
    response_dict["body"] = ElementTree.tostring(rest)


def _list_names(client: Any, arguments: dict[str, Any]) -> Any:
    """C{ListObjectsV2} with C{arguments}, its names read by L{_read_names}."""
    client.meta.events.register(
        "before-parse.s3.ListObjectsV2", _read_names, unique_id="txregistry-read-names"
    )
    _reading_names.on = True
    try:
        return client.list_objects_v2(**arguments)
    finally:
        _reading_names.on = False


class Children(NamedTuple):
    """
    What L{children_after} read of a directory.

    @ivar entries: the first children sorting after the page's C{after}:
        (name, whether it is a folder), sorted by name.
    @ivar complete: whether C{entries} holds all of them.
    @ivar read: the names of every child read, folders or files.
    @ivar last_key: the last key (or common prefix) the listing reached;
        empty when it found no key below the directory.
    """

    entries: list[tuple[str, bool]]
    complete: bool
    read: set[str]
    last_key: str


def start_after(key: str) -> str:
    """
    A C{StartAfter} the bucket takes, sorting at or before C{key}: C{key}
    up to its first control character (an XML answer cannot hold one) or
    lone surrogate, and its first L{KEY_BYTES} bytes (no key is longer).
    """
    for index, character in enumerate(key):
        if character < " " or "\ud800" <= character <= "\udfff":
            key = key[:index]
            break
    encoded = key.encode("utf-8")
    return encoded[:KEY_BYTES].decode("utf-8", "ignore") if len(encoded) > KEY_BYTES else key


def children_after(
    client: Any,
    bucket: str,
    prefix: str,
    after: str | None,
    limit: int | None,
    folders_only: bool,
) -> Children:
    """
    The children of the directory whose keys begin with C{prefix} that
    sort after C{after} in plain string order: at least C{limit} of them
    when there are that many (counting folders only, with
    C{folders_only}, and listing none but folders then).  One request in
    the main, more for a page of over L{LIST_AT_MOST} keys, and one for
    each beginning of the last name read that may sort before it (see the
    module's documentation).
    """
    found: dict[str, bool] = {}
    arguments: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/"}
    if after is not None:
        arguments["StartAfter"] = start_after(prefix + after)
    if limit is not None:
        # Names at or before "after" come after it as keys: itself, and
        # its beginnings followed by a character sorting before "/".
        slack = 2 + sum(character < "/" for character in after or "")
        arguments["MaxKeys"] = min(LIST_AT_MOST, max(LIST_AT_LEAST, limit + slack))
    last_key = ""
    while True:
        answer = _list_names(client, arguments)
        listed = [(common["Prefix"], True) for common in answer.get("CommonPrefixes", [])]
        listed += [(item["Key"], False) for item in answer.get("Contents", [])]
        for key, is_dir in listed:
            if key == prefix:
                continue  # a "directory marker" object some tools create
            last_key = max(last_key, key)
            name = key[len(prefix) :].rstrip("/")
            if after is None or name > after:
                found[name] = found.get(name, False) or is_dir
        truncated = bool(answer.get("IsTruncated"))
        wanted = [name for name, is_dir in found.items() if is_dir or not folders_only]
        if not truncated or (limit is not None and len(wanted) >= limit):
            break
        arguments["ContinuationToken"] = answer["NextContinuationToken"]
    if truncated:
        last_name = last_key[len(prefix) :].rstrip("/")
        ordered = sorted(wanted)
        bound = ordered[limit - 1] if limit is not None and len(ordered) >= limit else None
        for index in range(1, len(last_name)):
            name = last_name[:index]
            if (
                last_name[index] >= "/"
                or found.get(name)
                or (after is not None and name <= after)
                or (bound is not None and name > bound)
            ):
                continue
            probe = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}{name}/", MaxKeys=1)
            if probe.get("KeyCount") or probe.get("Contents"):
                found[name] = True
    entries = sorted((name, is_dir) for name, is_dir in found.items() if is_dir or not folders_only)
    if truncated and limit is not None:
        # Past the limit, a name that sorts before others read may not have
        # been looked for.
        del entries[limit:]
    return Children(entries, not truncated, set(found), last_key)


def holds(client: Any, bucket: str, prefix: str, name: str) -> bool:
    """Whether the directory of key prefix C{prefix} has a child, folder or file, called C{name}."""
    from botocore.exceptions import ClientError

    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}{name}/", MaxKeys=1)
    if listed.get("KeyCount") or listed.get("Contents"):
        return True
    try:
        client.head_object(Bucket=bucket, Key=prefix + name)
    except ClientError as error:
        if not is_missing(error):
            raise
        return False
    return True


def holds_anything(client: Any, bucket: str, prefix: str) -> bool:
    """Whether any key but a directory marker begins with C{prefix}."""
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=2)
    return any(item["Key"] != prefix for item in listed.get("Contents", []))
