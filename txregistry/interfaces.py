# -*- test-case-name: tests.test_drivers -*-
"""
Every interface that txregistry's plugins implement.

The storage driver contract is modelled on Distribution's ``StorageDriver``
(``registry/storage/driver/storagedriver.go``): a driver stores opaque bytes
under slash-separated paths and knows nothing about registries.  Every method
returns a L{Deferred}; a driver never blocks the reactor thread.

Paths
=====
A path is absolute, starts with ``/``, and is made of components matching
``[A-Za-z0-9._-]+`` separated by single slashes; ``.`` and ``..`` are not
components.  ``/`` alone names the root and is legal only for C{stat},
C{delete} and the listings (C{list}, C{walk}, and the optional
C{list_files}, C{list_page} and C{marked_folders}).
L{txregistry.drivers.base.ValidatingDriver} checks this before a driver
sees a path, so drivers may assume valid paths.

Directories are implicit: a path is a directory when some stored file lies
below it.  Writing a file creates its parents; deleting the last file below a
directory may or may not leave the directory behind, and callers must not
depend on either.

Errors
======
A Deferred fails with one of the exceptions in L{txregistry.drivers.errors}:
L{PathNotFoundError} for a missing path, L{InvalidPathError} for a path that
breaks the rules above, L{InvalidOffsetError} for a negative reader offset,
L{StorageUnavailableError} when the backend cannot be reached,
L{StorageFullError} when a write finds no room left (a full filesystem, a
spent quota).  Any other exception is a bug in the driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping, Sequence

    from twisted.internet.defer import Deferred

    from txregistry.digest import Digest


@dataclass(frozen=True)
class FileInfo:
    """
    What L{IStorageDriver.stat} knows about a path.

    @ivar path: the driver path that was asked for.
    @ivar size: the file's length in bytes; 0 for a directory.
    @ivar modified: seconds since the epoch of the last change, as a float.
    @ivar is_dir: whether the path is a directory.
    """

    path: str
    size: int
    modified: float
    is_dir: bool


class IFileReader(Interface):
    """
    Sequential reads from one stored file, from the offset it was opened at.
    """

    def read(max_bytes: int) -> Deferred[bytes]:
        """
        Read the next bytes.

        @param max_bytes: the most bytes to return; a positive number.
        @return: a Deferred firing with 1 to C{max_bytes} bytes, or with
            C{b""} once the end of the file is reached (at once when the
            reader was opened at or past the end).  A caller waits for one
            read to fire before asking for the next.
        """

    def close() -> Deferred[None]:
        """
        Release the reader's resources.  Safe to call more than once, and
        while no read is pending.

        @return: a Deferred firing when released.
        """


class ILocalFileReader(IFileReader):
    """
    An L{IFileReader} over a file of the local filesystem, which the HTTP
    layer may send with C{sendfile(2)}: the kernel copies the bytes from the
    page cache to the socket, with no copy through Python.
    """

    def local_file() -> tuple[int, int]:
        """
        The open file's descriptor and the offset reading would continue at.
        The descriptor stays valid until C{close} and must not be closed by
        the caller; reading it with C{sendfile} at explicit offsets does not
        move the reader.
        """


class IGrowingFileReader(ILocalFileReader):
    """
    An L{ILocalFileReader} over a file still being written: a pull-through
    cache's download (see L{txregistry.proxy.fetch}).  Its bytes may be
    sent up to L{readable_end}, which grows as the download is stored; a
    reader waits for L{grown} when it has sent them all.
    """

    def readable_end() -> int:
        """
        The offset in the file up to which bytes may be sent now: those
        stored, less the file's last bytes until the whole is verified.

        @raise Exception: why the download failed, once it has.
        """

    def grown() -> Deferred[None]:
        """
        A Deferred firing when L{readable_end} may have grown, or when the
        download ended (then L{readable_end} says how).
        """


class IFileWriter(Interface):
    """
    Appends bytes to one stored file.

    A writer ends committed (the bytes are durable and visible at its path),
    cancelled (the file is removed, including what it held before an
    appending writer opened it), or closed (what was written so far is
    kept and readable at the path, and a later C{writer(path, append=True)}
    continues it, possibly in another process).  Bytes that were not yet
    committed or closed may or may not be visible to readers.  A write whose
    Deferred failed leaves the file's content undefined: the caller cancels
    or starts over.
    """

    size = Attribute(
        "The file's size in bytes: what it held when opened with append, plus "
        "every byte passed to write() so far (fired or not)."
    )

    def write(data: bytes) -> Deferred[None]:
        """
        Append C{data}.

        @return: a Deferred firing once the driver has taken the bytes.  A
            caller waits for it before calling C{write} again, which is how a
            slow backend slows its producer down.
        """

    def close() -> Deferred[None]:
        """
        Flush and keep what was written; the writer is unusable afterwards.
        """

    def commit() -> Deferred[None]:
        """
        Flush durably and finish the file; the writer is unusable afterwards.
        """

    def cancel() -> Deferred[None]:
        """
        Remove the file and everything written to it; the writer is unusable
        afterwards.
        """


class IStorageDriver(Interface):
    """
    Stores bytes under paths.  See the module docstring for the rules every
    path follows and the errors every method may fail with.
    """

    name = Attribute("The driver's name, as used in the storage config.")

    def get_content(path: str) -> Deferred[bytes]:
        """
        Read a whole file.  Meant for small files (links, state).

        @return: the file's bytes; fails with L{PathNotFoundError} when the
            path does not exist or is a directory.
        """

    def put_content(path: str, content: bytes) -> Deferred[None]:
        """
        Store C{content} at C{path}, replacing any file there.  Readers see
        either the old or the new content, never a mix.
        """

    def reader(path: str, offset: int = 0) -> Deferred[IFileReader]:
        """
        Open a file for reading from byte C{offset}.

        @return: an L{IFileReader}; fails with L{PathNotFoundError} when the
            file does not exist and L{InvalidOffsetError} for a negative
            offset.  An offset at or past the end gives a reader at EOF.
        """

    def writer(path: str, append: bool) -> Deferred[IFileWriter]:
        """
        Open a file for writing.

        @param append: continue the existing file (which must exist, else
            L{PathNotFoundError}) when true, with C{size} starting at its
            length; when false, start a new file that replaces any existing
            one.  Until the new writer is closed or committed, readers of
            the path may see the old file or an empty one (the filesystem
            driver truncates at once; object storage keeps the old object).
        """

    def stat(path: str) -> Deferred[FileInfo]:
        """
        Describe a file or directory; L{PathNotFoundError} when neither.
        C{path} may be C{"/"}, the root (the storage health check stats it).
        """

    def list(path: str) -> Deferred[list[str]]:
        """
        The full paths of the direct children of directory C{path}, sorted.

        @return: fails with L{PathNotFoundError} when C{path} is not a
            directory (the root of an empty driver lists as empty).
        """

    def move(source: str, dest: str) -> Deferred[None]:
        """
        Move a file, replacing whatever file is at C{dest}.  Atomic where the
        backend allows: readers of C{dest} see the old or the new file.

        @return: fails with L{PathNotFoundError} when C{source} is missing.
        """

    def delete(path: str) -> Deferred[None]:
        """
        Delete a file, or a directory and everything below it.

        @return: fails with L{PathNotFoundError} when nothing is there.
        """

    def redirect_url(method: str, path: str) -> Deferred[str | None]:
        """
        A URL a client may fetch C{path} from directly (for C{GET} or
        C{HEAD}), or L{None} when the driver cannot offer one; then the
        registry streams the bytes itself.
        """

    def walk(path: str, visit: Callable[[FileInfo], bool | None]) -> Deferred[None]:
        """
        Call C{visit} for every file and directory below C{path}, parents
        before their children, siblings in sorted order.  When C{visit}
        returns C{False} for a directory, nothing below it is visited.

        @return: fails with L{PathNotFoundError} when C{path} is missing.
        """


class IBatchDeleter(Interface):
    """
    Optional, for a L{IStorageDriver} that deletes many paths at a lower
    cost than one L{IStorageDriver.delete} each (one trip to a thread, one
    request for many keys).  Garbage collection deletes through it;
    L{txregistry.drivers.base.delete_many} falls back to one delete after
    another for drivers without it.
    """

    def delete_many(paths: Sequence[str]) -> Deferred[list[str]]:
        """
        Delete each of C{paths} as L{IStorageDriver.delete} would (a file, or
        a directory and everything below it); a path where nothing is stored
        is not an error.  Where the driver keeps directories (the
        filesystem), a file's directory that its deletion leaves empty goes
        with it: a caller removes a folder of the layout that holds one file
        (a link, a blob's data) by naming the file, which costs two system
        calls where naming the folder costs it being read first.

        @return: fires with the paths that were deleted (those where
            something was stored), in the order given.
        """


class IBatchReader(Interface):
    """
    Optional, for a L{IStorageDriver} that reads many small files at a
    lower cost than one L{IStorageDriver.get_content} each (the filesystem
    reads them in one trip to a thread).  Garbage collection reads every
    manifest through it; L{txregistry.drivers.base.get_contents} falls back
    to one read after another for drivers without it.
    """

    def get_contents(paths: Sequence[str]) -> Deferred[dict[str, bytes]]:
        """
        Read each of C{paths} as L{IStorageDriver.get_content} would.

        @return: fires with the content of each path, by path; a path where
            no file is stored is left out.
        """


@dataclass(frozen=True)
class PutContent:
    """A write of L{IBatchWriter.write_batch}: L{IStorageDriver.put_content}."""

    path: str
    content: bytes


@dataclass(frozen=True)
class Move:
    """A write of L{IBatchWriter.write_batch}: L{IStorageDriver.move}."""

    source: str
    dest: str


@dataclass(frozen=True)
class Delete:
    """
    A write of L{IBatchWriter.write_batch}: L{IStorageDriver.delete}; with
    C{missing_ok}, a path where nothing is stored is not an error.
    """

    path: str
    missing_ok: bool = False


WriteOperation = PutContent | Move | Delete


class IBatchWriter(Interface):
    """
    Optional, for a L{IStorageDriver} that performs several writes at a
    lower cost than one call each (the filesystem does them in one trip to
    a thread: a small blob's push is a few small writes, and the trips cost
    more than the writes).  L{txregistry.drivers.base.write_batch} falls
    back to one call after another for drivers without it.
    """

    def write_batch(operations: Sequence[WriteOperation]) -> Deferred[None]:
        """
        Perform C{operations} in order, each as the method it names would;
        the first that fails stops the batch (those before it stay done,
        those after it are not tried) and the Deferred fails with its error.
        """


class IFileLister(Interface):
    """
    Optional, for a L{IStorageDriver} that lists every file of a tree at a
    lower cost than L{IStorageDriver.walk} visits it (the filesystem reads
    a whole repository in one trip to a thread, no call per entry on the
    reactor).  Garbage collection and C{txregistry check} read storage
    through it; L{txregistry.drivers.base.list_files} falls back to a walk
    for drivers without it.
    """

    def list_files(path: str, skip: Collection[str] = ()) -> Deferred[list[FileInfo]]:
        """
        Every file below directory C{path}, at any depth, in no particular
        order; directories are not listed, and nothing below a directory
        whose name is in C{skip} is.  A file removed while the tree is read
        may or may not be listed.

        @return: fails with L{PathNotFoundError} when C{path} is missing.
        """


class IPagedLister(Interface):
    """
    Optional, for a L{IStorageDriver} that reads a page of a sorted listing
    at a cost that grows with the page, not with the whole listing: the
    catalog and the tag lists are paged through it (C{n} and C{last}).
    Object storage lists from a key on (C{StartAfter}), a page of keys a
    request; the filesystem reads a page in one trip to its thread.
    L{txregistry.drivers.base.list_page} and
    L{txregistry.drivers.base.marked_folders} fall back to
    L{IStorageDriver.list} for drivers without it, reading the whole of
    every folder they look into.

    Names are compared in plain string order (code point by code point, a
    name before the longer ones it begins).  C{after} need not name
    anything stored, and may hold any character.
    """

    def list_page(path: str, after: str | None, limit: int | None) -> Deferred[list[str]]:
        """
        The names of the direct children of directory C{path} (files and
        directories, as L{IStorageDriver.list} lists them) that sort after
        C{after}: the first C{limit} of them, sorted.

        @param after: L{None} for every child.
        @param limit: 0 or more; L{None} for every one.
        @return: fails with L{PathNotFoundError} when C{path} is not a
            directory (the root of an empty driver lists as empty).
        """

    def marked_folders(
        path: str, marks: Collection[str], after: str | None, limit: int | None
    ) -> Deferred[list[str]]:
        """
        The folders below directory C{path}, at any depth, that hold a child
        (file or folder) whose name is one of C{marks}: the first C{limit}
        of them that sort after C{after}, in component order.  This is how
        the catalog finds repositories (the folders below C{repositories}
        that hold a C{_layers} or C{_manifests}).

        A folder is named by its path relative to C{path}
        (C{library/ubuntu}).  Component order compares paths component by
        component, each in plain string order: a folder sorts before what
        is below it, and C{a/b} before C{a-b} (which plain string order
        puts first), as Distribution's catalog sorts.  A folder whose name
        begins with an underscore is neither listed nor searched (the
        layout keeps there what belongs to the folder above: a repository's
        C{_layers}, C{_uploads}), nor is one whose name no driver path may
        hold; a marked folder is searched for marked folders below it.

        @param after: a relative path, or L{None} (or C{""}) for every
            folder; folders that sort at or before it are not read, as far
            as the backend allows.
        @param limit: 0 or more; L{None} for every one.
        @return: fires with the relative paths; an empty list when C{path}
            is missing.
        """


class IStaleWritesPurger(Interface):
    """
    Optional, for a L{IStorageDriver} whose backend keeps unfinished writes
    of its own, out of sight of L{IStorageDriver.list} (S3's incomplete
    multipart uploads, which are billed until aborted).  Upload purging
    (C{storage.maintenance.uploadpurging}) calls it on the driver below the
    validating wrapper and any storage middleware.
    """

    def purge_stale_writes(started_before: float) -> Deferred[int]:
        """
        Abort the unfinished writes below the driver's root that were started
        before C{started_before} (epoch seconds).

        @return: fires with how many were aborted.
        """


class IStorageDriverFactory(Interface):
    """
    A Twisted plugin (also providing L{twisted.plugin.IPlugin}) that makes
    storage drivers.  The storage section of the config names the factory:
    C{storage: {filesystem: {rootdirectory: /x}}} picks the factory whose
    C{name} is C{filesystem} and calls C{create} with C{{"rootdirectory":
    "/x"}}.  Third-party packages ship their own module under
    C{twisted/plugins/}.
    """

    name = Attribute("The name the storage config selects the driver by.")

    def create(parameters: Mapping[str, Any]) -> IStorageDriver:
        """
        Make a driver from its config parameters.

        @raise txregistry.config.ConfigError: naming the key, for an unknown
            parameter or a value of the wrong type.
        """


class IStorageMiddlewareFactory(Interface):
    """
    A Twisted plugin (also providing L{twisted.plugin.IPlugin}) that wraps
    storage drivers in middleware, as Distribution's storage middleware
    does (C{registry/storage/driver/middleware}).  Each entry of the
    config's C{middleware.storage} list names a factory:

        middleware:
          storage:
            - name: redirect
              options: {baseurl: https://cdn.example/}

    picks the factory whose C{name} is C{redirect} and calls C{wrap} with
    the driver built so far and C{{"baseurl": "https://cdn.example/"}}.
    Entries apply in order: the first wraps the configured driver, the next
    wraps the first's driver, and so on; the registry's path checks
    (L{txregistry.drivers.base.ValidatingDriver}) wrap the last, so a
    middleware sees only valid paths.  Third-party packages ship their own
    module under C{twisted/plugins/}.

    The driver C{wrap} returns is a full L{IStorageDriver} with the same
    semantics: it changes what it is for (C{redirect_url}, say) and
    delegates every other call to the wrapped driver unchanged, errors
    included.  L{txregistry.middleware.storage.DelegatingDriver} does the
    delegating for a subclass.
    """

    name = Attribute("The name a middleware.storage entry selects the middleware by.")

    def wrap(driver: IStorageDriver, options: Mapping[str, Any]) -> IStorageDriver:
        """
        Wrap C{driver} in the middleware, configured by C{options}.  Called
        once, at start-up.

        @param options: the entry's C{options}; empty when it has none.
        @return: the wrapping driver.
        @raise txregistry.config.ConfigError: for an unknown option, a
            missing one or a bad value, its key relative to the entry
            (C{options.baseurl}); the registry adds the entry's own key, so
            the error names C{middleware.storage[0].options.baseurl}.
        """


@dataclass(frozen=True)
class Access:
    """
    One action on one resource, as Distribution's C{auth.Access} and the
    token spec's scopes name it: C{repository:<name>:pull} is
    C{Access("repository", "<name>", "pull")}.

    @ivar type: C{repository} or C{registry}.
    @ivar name: the repository's name, or C{catalog} for the registry.
    @ivar action: C{pull}, C{push}, C{delete} or C{*}.
    """

    type: str
    name: str
    action: str


@dataclass(frozen=True)
class AuthRequest:
    """
    What an access controller sees of a request.

    @ivar method: the HTTP method, upper case.
    @ivar path: the request's path, as sent.
    @ivar headers: the request headers (C{twisted.web.http_headers.Headers}).
    @ivar peer: the client's address, for telling clients apart (as in
        limiting how much work one client's failed logins may cost).
    """

    method: str
    path: str
    headers: Any
    peer: str


@dataclass(frozen=True)
class Identity:
    """
    Who a request was authorized for.

    @ivar name: the user's name, or L{None} when the controller does not
        know one.
    """

    name: str | None


class IAccessController(Interface):
    """
    Decides whether a request may do what it asks, as Distribution's
    C{auth.AccessController}: from the request's credentials (an
    C{Authorization} header, say) and the list of L{Access} the registry
    derived from the route (C{pull} for reads, C{pull} and C{push} for
    writes, C{delete} for deletes; C{registry:catalog:*} for the catalog;
    nothing at all for C{GET /v2/}, which only asks who the client is).
    """

    def authorized(request: AuthRequest, access: Sequence[Access]) -> Deferred[Identity]:
        """
        Check that C{request} may do everything in C{access}.

        @return: a Deferred firing with who the request is from; failing
            with a L{txregistry.errors.RegistryError}: C{UNAUTHORIZED} (401)
            carrying the C{WWW-Authenticate} challenge the client should
            answer in its C{headers}, when the request has no credentials,
            wrong ones, or ones that do not cover C{access}; C{DENIED} (403)
            when the controller knows the client and refuses it;
            C{TOOMANYREQUESTS} (429) when it will not judge this client's
            credentials now (too many of its checks under way).  A
            controller never puts a secret (a password, a token) in an
            error's message or detail, nor in a log line.
        """


class IAccessControllerFactory(Interface):
    """
    A Twisted plugin (also providing L{twisted.plugin.IPlugin}) that makes
    access controllers.  The C{auth} section of the config names one:
    C{auth: {htpasswd: {realm: r, path: /p}}} picks the factory whose
    C{name} is C{htpasswd} and calls C{create} with C{{"realm": "r",
    "path": "/p"}}.
    """

    name = Attribute("The name the auth config selects the controller by.")

    def create(options: Mapping[str, Any]) -> IAccessController:
        """
        Make a controller from its options.  Called once, at start-up.

        @raise txregistry.config.ConfigError: naming the key
            (C{auth.htpasswd.path}), for an unknown option, a missing one
            or a bad value.
        """


# -- notifications -------------------------------------------------------------


class IEventSink(Interface):
    """
    Where one notification endpoint's events go (the card's notifier): a
    webhook (the built-in C{webhook} sink) or a message broker.  The
    registry hands it batches in order, one at a time, and hands the same
    batch again after a failure (events keep their C{id} across retries,
    so a receiver can drop the ones it has seen): delivery is at least
    once.  A sink neither retries nor queues: the registry's outbox does.
    """

    def write(events: Sequence[Mapping[str, Any]]) -> Deferred[None]:
        """
        Deliver C{events} (Distribution's event documents, oldest first).
        The registry hands a L{txregistry.events.event.EncodedEvents}: a
        sequence that holds each event's JSON (C{encoded}), for a sink
        that sends JSON, and parses an event only when it is read.

        @return: a Deferred firing when the receiver has them, or failing
            with any exception when it may not (the batch is then written
            again later).  A sink bounds the time it takes (the endpoint's
            C{timeout}).
        """

    def close() -> Deferred[None]:
        """Release what the sink holds (connections); no write follows."""


class IEventSinkFactory(Interface):
    """
    A Twisted plugin (also providing L{twisted.plugin.IPlugin}) that makes
    event sinks.  A notification endpoint names one with its C{sink} key
    (txregistry's own; C{webhook} when absent), and C{create} gets the
    endpoint's configuration.
    """

    name = Attribute("The name an endpoint's sink key selects the factory by.")

    def create(endpoint: Any) -> IEventSink:
        """
        Make the sink of one endpoint, at start-up.

        @param endpoint: a L{txregistry.config.notifications.EndpointConfig}
            (its C{url}, C{headers}, C{timeout}, and its C{options}
            mapping for what a third-party sink needs beyond them).
        @raise txregistry.config.ConfigError: naming the key below the
            endpoint (C{options.topic}; the registry names the endpoint)
            for an option that is missing or wrong.
        """


class ICache(Interface):
    """
    The blob descriptor cache (the card's cache; Distribution's
    C{storage.cache.blobdescriptor}): what is known to exist in a
    repository, a linked blob (kind C{"layer"}) or a manifest revision
    (kind C{"revision"}), with its size, so that the HEADs and GETs of a
    pull skip their storage lookups.

    Only what exists is cached, and storage stays the truth: a miss (or a
    cache that cannot answer) sends the lookup to storage, which then sets
    the entry.  A delete forgets the entry before the registry answers, so
    that a cache shared by several processes (Redis) answers 404 through
    every one of them at once.  A cache must never answer for an entry it
    may have missed the forgetting of (while it was unreachable, say):
    answering L{None} is always correct, a stale size never is.  No method
    fails: a cache that cannot answer logs it and answers L{None}.
    """

    def get(repository: str, kind: str, digest: Digest) -> Deferred[int | None]:
        """The size known for C{digest} in C{repository}, or L{None} if unknown."""

    def set(repository: str, kind: str, digest: Digest, size: int) -> Deferred[None]:
        """Remember that C{digest} exists in C{repository} with C{size} bytes."""

    def forget(repository: str, kind: str, digest: Digest) -> Deferred[None]:
        """
        C{digest} was deleted from C{repository}: fires once no process
        sharing the cache will answer for it (or once the cache knows to
        distrust it, when it cannot be reached).
        """

    def clear() -> Deferred[bool]:
        """
        Forget every entry, for every process sharing the cache: after a
        garbage collection deleted blobs and manifests it may know.

        @return: fires with whether the cache could be emptied (else the
            caller warns: entries of deleted content may be answered until
            it is).
        """

    def close() -> Deferred[None]:
        """Release connections; nothing is asked after."""


class ICacheFactory(Interface):
    """
    A Twisted plugin (also providing L{twisted.plugin.IPlugin}) that makes
    the cache C{storage.cache.blobdescriptor} names (C{inmemory} and
    C{redis} are built in).
    """

    name = Attribute("The name C{storage.cache.blobdescriptor} selects the factory by.")

    def create(config: Any) -> ICache:
        """
        Make the cache, at start-up.

        @param config: the whole L{txregistry.config.Config} (its
            C{storage.blob_descriptor_cache_size}, its C{redis} section).
        @raise txregistry.config.ConfigError: naming the key at fault.
        """
