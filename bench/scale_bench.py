"""
The scale benchmark of issue 17: how txregistry and the reference
(Distribution 2.8's C{docker-registry}) cope as a registry grows, both in
the same run, on the same data, on 127.0.0.1 only.

Workloads (C{--only NAME} picks some; C{--sizes} changes their sizes):

 - C{catalog}: a storage of 1 000, 10 000 and 100 000 repositories
   (C{team<k>/app<i>}, each with a config, a layer and a manifest tagged
   C{latest}), laid out directly in Distribution's filesystem layout, once
   per size, and kept in the scratch folder for later runs; both registries
   serve that folder.  C{GET /v2/_catalog?n=100} (the first page), and a
   walk in pages of C{n=1000} following C{Link}, whose names are counted:
   both must list every repository.
 - C{tags}: one repository with 100, 10 000 and 100 000 tags, laid out
   likewise.  C{GET /v2/<name>/tags/list} whole, and a walk in pages of
   C{n=100}.
 - C{referrers}: one manifest with 1 000 referrers (small OCI artifacts
   with a C{subject}), pushed to txregistry with the index of the referrers
   tag schema (C{sha256-<hex>}) that OCI clients fall back to.
   txregistry: C{GET /v2/<name>/referrers/<digest>}; the reference has no
   referrers API, so it is timed on what a client does instead, a C{GET}
   of that index by its tag (also timed on txregistry, for comparison).
 - C{push}: 2 000 distinct 4 KiB blobs, each C{POST} then one C{PUT
   ?digest=}, from 16 threads on keep-alive connections (C{http.client});
   blobs per second.  Target: txregistry at least 1.5x the reference.
 - C{layers}: C{skopeo copy} of a 200-layer image (small random layers,
   built once with umoci and kept) into the registry, then back out.
 - C{idle}: 1 000 keep-alive connections, each after one C{GET /v2/},
   held open; the registry's RSS before and with them, whether a fresh
   client is still answered meanwhile, and whether the held ones still are.
 - C{s3}: moto's S3 server behind a counting proxy (both on 127.0.0.1); a
   catalog of 10 000 repositories and a repository of 10 000 tags laid out
   in buckets; the catalog's first page and walk, the tags whole and
   walked, on both registries, with the number of bucket requests each
   costs.

Every figure is a median over C{--runs} rounds; in each round every
registry is started afresh for each workload and size, the order
alternating.  A walk or a request that takes longer than C{--timeout}
seconds is reported as such (its time is then a lower bound) and not tried
again at larger sizes.  Ratios are such that above 1 txregistry is better:
reference time / txregistry time, txregistry rate / reference rate.  The
figures go to C{--json}.  Exit status 1 when a check failed (the two
registries did not list the same names).

Run: C{bash bench/run.sh scale [--quick]} (installs what is missing), or
C{.venv/bin/python bench/scale_bench.py [--quick] [--runs N] [--only
WORKLOAD] [--sizes [WORKLOAD=]N,N] [--json bench/results-scale.json]}.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import http.client
import http.server
import json
import os
import random
import re
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from common import (
    REGISTRIES,
    BenchRegistry,
    Measure,
    Phase,
    RegistryOptions,
    add_registry_options,
    alternated,
    connection,
    expect,
    machine,
    registry_options,
    rss_mb,
    source_version,
    start_registry,
    target,
    with_query,
)
from registry_bench import Skopeo, build_image
from txregistry.testing.s3server import S3ServerProcess

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
ARTIFACT_TYPE = "application/vnd.example.scale-bench.v1"

# Bumped whenever the laid-out folders change, so that old ones are not reused.
LAYOUT_VERSION = 1
V2 = "docker/registry/v2"
REPOSITORIES_PER_TEAM = 100
TAGS_REPOSITORY = "bench/tags"
REFERRERS_REPOSITORY = "bench/referrers"
PUSH_REPOSITORY = "bench/small"
LAYERS_REPOSITORY = "bench/layers"
S3_ROOT = "registry"
BLOB_BYTES = 4096
LAYER_BYTES = 4096
CATALOG_PAGE = 100
CATALOG_WALK_PAGE = 1000
TAGS_WALK_PAGE = 100

WORKLOADS = ("catalog", "tags", "referrers", "push", "layers", "idle", "s3")
FULL_SIZES: dict[str, tuple[int, ...]] = {
    "catalog": (1000, 10000, 100000),
    "tags": (100, 10000, 100000),
    "referrers": (1000,),
    "push": (2000,),
    "layers": (200,),
    "idle": (1000,),
    "s3": (10000,),
}
QUICK_SIZES: dict[str, tuple[int, ...]] = {
    "catalog": (300, 3000),
    "tags": (100, 3000),
    "referrers": (200,),
    "push": (500,),
    "layers": (20,),
    "idle": (200,),
    "s3": (300,),
}
# For both registries (--config may override): the blob descriptor cache
# the other benchmarks use, and the catalog page limit made explicit, so
# that the walks' n=1000 is allowed by both.
DEFAULT_CONFIG = ("storage.cache.blobdescriptor=inmemory", "catalog.maxentries=1000")


# -- what is measured -------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """
    One measured figure of a workload: a row group of its table.

    @ivar better: C{"lower"} (a time: the ratio is reference /
        txregistry), C{"higher"} (a rate: txregistry / reference), or
        C{None} (no ratio).
    @ivar target: the least ratio the issue asks for, if any.
    @ivar growth: whether the table shows how the figure grows with size.
    """

    key: str
    label: str
    unit: str
    better: str | None = "lower"
    target: float | None = None
    growth: bool = True


ITEMS: dict[str, tuple[Item, ...]] = {
    "catalog": (
        Item("first_page", f"first page n={CATALOG_PAGE}", "s", target=1.0),
        Item("walk", f"walk n={CATALOG_WALK_PAGE}", "s", target=1.0),
    ),
    "tags": (
        Item("whole", "whole list", "s", target=1.0),
        Item("first_page", f"first page n={TAGS_WALK_PAGE}", "s", target=1.0),
        # No target: Distribution 2.8 answers the whole list to every page,
        # so its "walk" is one request, which no paged walk can match.
        Item("walk", f"walk n={TAGS_WALK_PAGE}", "s"),
    ),
    "referrers": (
        Item("listing", "referrers (tx: API, ref: tag)", "s", growth=False),
        Item("fallback", "referrers tag index, both", "s", growth=False),
    ),
    "push": (
        Item("rate", "4 KiB blobs pushed", "blobs/s", "higher", 1.5, False),
        Item("registry_cpu", "registry CPU", "%", None, growth=False),
        Item("client_cpu", "client CPU", "%", None, growth=False),
    ),
    "layers": (
        Item("push", "skopeo push", "s", growth=False),
        Item("pull", "skopeo pull", "s", growth=False),
    ),
    "idle": (
        Item("rss_before", "RSS before", "MB", growth=False),
        Item("rss_held", "RSS while held", "MB", growth=False),
        Item("kb_per_connection", "RSS per held connection", "KB", growth=False),
        Item("fresh_get", "fresh GET /v2/ meanwhile (5)", "ms", growth=False),
        Item("held_answered", "held ones answered after", "conns", "higher", growth=False),
    ),
    "s3": (
        Item("catalog_first_page", f"catalog first page n={CATALOG_PAGE}", "s", target=1.0),
        Item("catalog_first_page_requests", "  bucket requests", "req", growth=False),
        Item("catalog_walk", f"catalog walk n={CATALOG_WALK_PAGE}", "s", target=1.0),
        Item("catalog_walk_requests", "  bucket requests per page", "req", growth=False),
        Item("tags_whole", "tags whole list", "s", target=1.0),
        Item("tags_whole_requests", "  bucket requests", "req", growth=False),
        # No target, as on the filesystem: Distribution 2.8 ignores n.
        Item("tags_walk", f"tags walk n={TAGS_WALK_PAGE}", "s"),
        Item("tags_walk_requests", "  bucket requests per page", "req", growth=False),
    ),
}

HEADINGS = {
    "catalog": "catalog, filesystem: GET /v2/_catalog on repositories team<k>/app<i>",
    "tags": f"tags, filesystem: GET /v2/{TAGS_REPOSITORY}/tags/list; "
    "Distribution 2.8 ignores n here and answers every tag in one page (its first page "
    "is the whole list, and its walk one request: the walk has no target)",
    "referrers": "referrers of one manifest: txregistry's GET /v2/<name>/referrers/<digest> "
    "against, on the reference (which has no referrers API), what an OCI client falls back "
    "to: GET /v2/<name>/manifests/sha256-<hex>, an index of the referrers",
    "push": "push of distinct 4 KiB blobs: POST, then one PUT ?digest=, 16 threads "
    "on keep-alive connections",
    "layers": "a many-layer image (4 KiB random layers, built with umoci): skopeo copy "
    "into the registry, then out into an oci: folder",
    "idle": "idle keep-alive connections, each after one GET /v2/; MB = 10^6 bytes, "
    "KB = 10^3 bytes; RSS summed over the registry's process tree",
    "s3": "S3 (moto behind a counting proxy): catalog of N repositories, N tags; requests = "
    "requests reaching the bucket",
}


@dataclass
class Sample:
    """
    One figure of one registry in one round.

    @ivar value: the figure, or C{None} when it could not be measured.
    @ivar bound: the value is a lower bound (a time that hit the timeout).
    @ivar detail: what else was seen (pages, names, CPU, requests).
    """

    workload: str
    item: str
    size: int
    registry: str
    run: int
    value: float | None
    bound: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


class Results:
    """
    Every sample, the checks that failed, and the smallest size at which
    each figure of each registry timed out (it is not measured again there
    or above).
    """

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.failures: list[str] = []
        self.timed_out: dict[tuple[str, str, str], int] = {}

    def add(self, sample: Sample) -> None:
        """Record C{sample}, and remember a timeout."""
        self.samples.append(sample)
        if sample.bound:
            key = (sample.workload, sample.item, sample.registry)
            self.timed_out[key] = min(self.timed_out.get(key, sample.size), sample.size)

    def skip_reason(self, workload: str, item: str, registry: str, size: int) -> str | None:
        """Why not to measure this again: it timed out at this size or a smaller one."""
        smallest = self.timed_out.get((workload, item, registry))
        if smallest is not None and smallest <= size:
            return f"timed out at size {smallest}"
        return None

    def fail(self, message: str) -> None:
        """A check failed: say so now, loudly, and make the exit status 1."""
        self.failures.append(message)
        print(f"CHECK FAILED: {message}", file=sys.stderr, flush=True)


@dataclass
class Context:
    """What every workload needs: where things go, how registries start, the limits."""

    scratch: Path
    work: Path
    options: RegistryOptions
    results: Results
    timeout: float
    repeats: int
    push_threads: int
    stack: ExitStack
    s3: S3Buckets | None = None


# -- Distribution's layout ----------------------------------------------------------------


@dataclass(frozen=True)
class StoredBlob:
    """A blob's bytes and its sha256 hex digest."""

    data: bytes
    hex: str

    @classmethod
    def of(cls, data: bytes) -> StoredBlob:
        """The blob of C{data}."""
        return cls(data, hashlib.sha256(data).hexdigest())

    @property
    def digest(self) -> str:
        """C{sha256:<hex>}."""
        return f"sha256:{self.hex}"


@dataclass(frozen=True)
class SharedImage:
    """The one image (config, layer, manifest) every laid-out repository holds."""

    config: StoredBlob
    layer: StoredBlob
    manifest: StoredBlob

    @classmethod
    def make(cls) -> SharedImage:
        """The image, the same bytes at every call."""
        layer = StoredBlob.of(random.Random(LAYOUT_VERSION).randbytes(1024))
        config = StoredBlob.of(
            json.dumps(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
                }
            ).encode()
        )
        manifest = StoredBlob.of(
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {
                        "mediaType": OCI_CONFIG,
                        "digest": config.digest,
                        "size": len(config.data),
                    },
                    "layers": [
                        {"mediaType": OCI_LAYER, "digest": layer.digest, "size": len(layer.data)}
                    ],
                }
            ).encode()
        )
        return cls(config, layer, manifest)

    def blob_files(self) -> Iterator[tuple[str, bytes]]:
        """The blobs' C{data} files (paths relative to C{docker/registry/v2})."""
        for blob in (self.config, self.layer, self.manifest):
            yield f"blobs/sha256/{blob.hex[:2]}/{blob.hex}/data", blob.data

    def repository_files(self, name: str, tags: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """A repository's link files: its two layers, the manifest, and C{tags} on it."""
        base = f"repositories/{name}"
        for blob in (self.config, self.layer):
            yield f"{base}/_layers/sha256/{blob.hex}/link", blob.digest.encode()
        manifest = self.manifest
        link = manifest.digest.encode()
        yield f"{base}/_manifests/revisions/sha256/{manifest.hex}/link", link
        for tag in tags:
            yield f"{base}/_manifests/tags/{tag}/current/link", link
            yield f"{base}/_manifests/tags/{tag}/index/sha256/{manifest.hex}/link", link


def repository_name(index: int) -> str:
    """The catalog's repository C{index}: nested, C{REPOSITORIES_PER_TEAM} per team."""
    return f"team{index // REPOSITORIES_PER_TEAM:04d}/app{index:06d}"


def tag_name(index: int) -> str:
    """The tags workload's tag C{index}."""
    return f"tag{index:06d}"


def layout_files(kind: str, start: int, stop: int) -> Iterator[tuple[str, bytes]]:
    """
    The files of part C{start}..C{stop} of a C{kind} layout (C{"catalog"}:
    repositories, C{"tags"}: tags of one repository); part 0 also has the
    blobs.
    """
    image = SharedImage.make()
    if start == 0:
        yield from image.blob_files()
    if kind == "catalog":
        for index in range(start, stop):
            yield from image.repository_files(repository_name(index), ["latest"])
    else:
        tags = (tag_name(index) for index in range(start, stop))
        files = image.repository_files(TAGS_REPOSITORY, tags)
        if start != 0:
            # The repository's own links once, with the first part.
            files = (item for item in files if "/_manifests/tags/" in item[0])
        yield from files


def write_files(v2: str, files: Iterable[tuple[str, bytes]]) -> int:
    """Write C{files} below the folder C{v2}; how many."""
    count = 0
    for relative, data in files:
        path = f"{v2}/{relative}"
        # Every link file has a folder of its own: nothing to remember.
        os.makedirs(path.rpartition("/")[0], exist_ok=True)
        with open(path, "wb") as file:
            file.write(data)
        count += 1
    return count


def _write_part(v2: str, kind: str, start: int, stop: int) -> int:
    return write_files(v2, layout_files(kind, start, stop))


def parts(size: int, count: int) -> list[tuple[int, int]]:
    """C{range(size)} cut into C{count}-sized parts."""
    return [(start, min(start + count, size)) for start in range(0, size, count)]


def laid_out_folder(scratch: Path, kind: str, size: int) -> Path:
    """
    A storage root holding a C{kind} layout of C{size}: the one kept in
    C{scratch} from an earlier run, or written now (by as many processes as
    CPUs) and kept.
    """
    folder = scratch / f"{kind}-{size}-v{LAYOUT_VERSION}"
    marker = folder / "complete.json"
    if marker.exists():
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    v2 = str(partial / V2)
    began = time.perf_counter()
    print(f"  laying out {kind} of {size} in {folder} (kept for later runs)", flush=True)
    with concurrent.futures.ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = [
            pool.submit(_write_part, v2, kind, start, stop) for start, stop in parts(size, 2000)
        ]
        files = sum(future.result() for future in futures)
    elapsed = time.perf_counter() - began
    (partial / "complete.json").write_text(
        json.dumps({"kind": kind, "size": size, "files": files, "seconds": elapsed}) + "\n"
    )
    partial.rename(folder)
    print(f"  laid out {files} files in {elapsed:.1f} s", flush=True)
    return folder


# -- talking to the registries ----------------------------------------------------------------

_NEXT = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')


def next_link(base_url: str, header: str | None) -> str | None:
    """The request target of a C{Link} header's next page, if it has one."""
    if not header:
        return None
    found = _NEXT.search(header)
    return target(base_url, found.group(1)) if found else None


@dataclass
class Walk:
    """A walk through a paged list: its time, pages and the names listed."""

    seconds: float
    pages: int
    names: list[str]
    timed_out: bool


def walk(
    base_url: str,
    first: str,
    key: str,
    timeout: float,
    on_page: Callable[[], object] = lambda: None,
) -> Walk:
    """
    C{GET} C{first}, then each page its C{Link} header names, until one has
    none or C{timeout} seconds have passed; the names under C{key}.  Bodies
    are parsed after the clock stops; C{on_page} is called after each page.
    """
    client = connection(base_url, timeout=timeout)
    bodies: list[bytes] = []
    request_target: str | None = first
    timed_out = False
    began = time.perf_counter()
    try:
        while request_target is not None:
            remaining = timeout - (time.perf_counter() - began)
            if remaining <= 0:
                timed_out = True
                break
            # A page may take no longer than what is left.
            client.timeout = remaining
            if client.sock is not None:
                client.sock.settimeout(remaining)
            try:
                client.request("GET", request_target)
                response = client.getresponse()
                bodies.append(expect(response, 200, f"GET {request_target}"))
                on_page()
            except TimeoutError:
                timed_out = True
                break
            request_target = next_link(base_url, response.getheader("Link"))
        elapsed = time.perf_counter() - began
    finally:
        client.close()
    names = [name for body in bodies for name in json.loads(body)[key] or []]
    return Walk(elapsed, len(bodies), names, timed_out)


@dataclass
class Reading:
    """Timed C{GET}s of one resource: seconds of each, the last body, all C{GET}s made."""

    seconds: list[float]
    body: bytes
    timed_out: bool
    gets: int


def timed_get(
    base_url: str,
    path: str,
    timeout: float,
    repeats: int,
    accept: str | None = None,
    budget: float = 5.0,
) -> Reading:
    """
    One warm-up C{GET} of C{path}, then up to C{repeats} timed ones while
    C{budget} seconds last.  A warm-up longer than C{budget} is the only
    sample: warm caches cannot matter much to a request that slow.
    """
    client = connection(base_url, timeout=timeout)
    headers = {"Accept": accept} if accept else {}
    samples: list[float] = []
    body = b""
    gets = 0
    try:
        while len(samples) < repeats and sum(samples) <= budget:
            began = time.perf_counter()
            gets += 1
            try:
                client.request("GET", path, headers=headers)
                body = expect(client.getresponse(), 200, f"GET {path}")
            except TimeoutError:
                return Reading([time.perf_counter() - began], b"", True, gets)
            elapsed = time.perf_counter() - began
            if gets > 1 or elapsed > budget:
                samples.append(elapsed)
    finally:
        client.close()
    return Reading(samples, body, False, gets)


@contextmanager
def serving(
    registry: str,
    workdir: Path,
    options: RegistryOptions,
    storage: dict[str, Any] | None = None,
) -> Iterator[BenchRegistry]:
    """A registry started for a block, stopped after it whatever happens."""
    process = start_registry(registry, workdir, options, storage)
    try:
        yield process
    except BaseException:
        print(process.output()[-3000:], file=sys.stderr)
        raise
    finally:
        process.stop()


def on_root(options: RegistryOptions, root: Path) -> RegistryOptions:
    """C{options} with the filesystem storage at C{root} (last: it wins)."""
    return dataclasses.replace(
        options, config=[*options.config, f"storage.filesystem.rootdirectory={root}"]
    )


# -- recording ----------------------------------------------------------------------------


class Recorder:
    """Records the samples of one workload, size, registry and round."""

    def __init__(self, ctx: Context, workload: str, size: int, registry: str, run: int) -> None:
        self.ctx = ctx
        self.workload = workload
        self.size = size
        self.registry = registry
        self.run = run

    def skip(self, item: str) -> bool:
        """Whether C{item} timed out before (it is then recorded as a bound)."""
        reason = self.ctx.results.skip_reason(self.workload, item, self.registry, self.size)
        if reason is None:
            return False
        self.add(item, self.ctx.timeout, bound=True, skipped=reason)
        return True

    def add(self, item: str, value: float | None, bound: bool = False, **detail: Any) -> None:
        """Record one figure of C{item}."""
        self.ctx.results.add(
            Sample(self.workload, item, self.size, self.registry, self.run, value, bound, detail)
        )

    def reading(self, item: str, reading: Reading, **detail: Any) -> None:
        """Record the median of timed reads, and say it."""
        value = statistics.median(reading.seconds)
        self.add(item, value, reading.timed_out, samples=reading.seconds, **detail)
        self.say(item, value, reading.timed_out)

    def walked(self, item: str, result: Walk, expected: int, **detail: Any) -> None:
        """Record a walk, say it, and check its names unless it was cut short."""
        self.add(
            item,
            result.seconds,
            result.timed_out,
            pages=result.pages,
            names=len(result.names),
            **detail,
        )
        self.say(item, result.seconds, result.timed_out, f"{result.pages} pages")
        if not result.timed_out:
            self.check_names(item, result.names, expected)

    def check_names(self, item: str, names: list[str], expected: int) -> None:
        """Fail loudly unless C{names} are C{expected} distinct names."""
        unique = len(set(names))
        if len(names) != expected or unique != expected:
            self.ctx.results.fail(
                f"{self.workload} {item} at size {self.size}: {self.registry} listed "
                f"{len(names)} names ({unique} distinct), {expected} expected"
            )

    def say(self, item: str, seconds: float, timed_out: bool, more: str = "") -> None:
        """Print a time as it is measured."""
        text = f">{seconds:.1f} s (timed out)" if timed_out else f"{seconds:.3f} s"
        print(f"    {self.registry}: {item} {text}{', ' + more if more else ''}", flush=True)


@dataclass(frozen=True)
class Listing:
    """
    A paged list and how it is measured: one read of C{path} (with
    C{n=first_page} if set), then a walk in pages of C{walk_page}; the
    names are under C{key}; C{items} name the two figures.
    """

    path: str
    key: str
    first_page: int | None
    walk_page: int
    items: tuple[str, str]


CATALOG = Listing(
    "/v2/_catalog", "repositories", CATALOG_PAGE, CATALOG_WALK_PAGE, ("first_page", "walk")
)
TAGS = Listing(f"/v2/{TAGS_REPOSITORY}/tags/list", "tags", None, TAGS_WALK_PAGE, ("whole", "walk"))


def measure_listing(
    rec: Recorder,
    url: str,
    listing: Listing,
    expected: int,
    counter: CountingProxy | None = None,
) -> None:
    """
    Read, then walk, C{listing} of C{expected} names; each skipped when it
    timed out before, the walk also when the read just did.  With
    C{counter}, the bucket requests each cost (a lower bound when it timed
    out before one page was whole).
    """
    read_item, walk_item = listing.items
    ctx = rec.ctx
    snapshot = counter.snapshot if counter is not None else Counter
    read_timed_out = False
    if not rec.skip(read_item):
        read_path = listing.path
        if listing.first_page:
            read_path = with_query(read_path, f"n={listing.first_page}")
        before = snapshot()
        reading = timed_get(url, read_path, ctx.timeout, ctx.repeats)
        spent = snapshot() - before
        read_timed_out = reading.timed_out
        rec.reading(read_item, reading)
        if counter is not None:
            per_get = spent.total() / reading.gets
            rec.add(f"{read_item}_requests", per_get, reading.timed_out, kinds=dict(spent))
        if not reading.timed_out:
            names = json.loads(reading.body)[listing.key] or []
            rec.check_names(read_item, names, min(listing.first_page or expected, expected))
    if read_timed_out:
        rec.add(walk_item, ctx.timeout, bound=True, skipped="the single read timed out")
    elif not rec.skip(walk_item):
        before = snapshot()
        after_pages = [before]
        walk_path = with_query(listing.path, f"n={listing.walk_page}")
        result = walk(
            url, walk_path, listing.key, ctx.timeout, lambda: after_pages.append(snapshot())
        )
        rec.walked(walk_item, result, expected)
        if counter is not None:
            # Up to the last whole page: a page cut short by the timeout does not count.
            spent = after_pages[-1] - before if result.pages else snapshot() - before
            per_page = spent.total() / max(result.pages, 1)
            rec.add(f"{walk_item}_requests", per_page, not result.pages, kinds=dict(spent))


# -- catalog and tags on the filesystem ---------------------------------------------------------


def warm_folders(top: Path, depth: int) -> None:
    """
    Read the folders below C{top} down to C{depth} levels, so that the
    kernel has them cached for whichever registry goes first (else the
    first one's walk pays for reading them from disk, the second's not).
    """
    pending = [(top, 0)]
    while pending:
        folder, level = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if level < depth and entry.is_dir(follow_symlinks=False):
                    pending.append((Path(entry.path), level + 1))


def bench_catalog(ctx: Context, size: int, run: int, order: Sequence[str]) -> None:
    """The catalog of C{size} repositories on disk: the first page and a walk."""
    root = laid_out_folder(ctx.scratch, "catalog", size)
    # repositories/team<k>/app<i>/ and its children: what a catalog reads.
    warm_folders(root / "docker/registry/v2/repositories", 3)
    for registry in order:
        rec = Recorder(ctx, "catalog", size, registry, run)
        with serving(registry, ctx.work / registry, on_root(ctx.options, root)) as process:
            measure_listing(rec, process.url, CATALOG, size)


def bench_tags(ctx: Context, size: int, run: int, order: Sequence[str]) -> None:
    """One repository of C{size} tags on disk: the whole list, the first page and a walk."""
    root = laid_out_folder(ctx.scratch, "tags", size)
    warm_folders(root / f"docker/registry/v2/repositories/{TAGS_REPOSITORY}/_manifests/tags", 1)
    for registry in order:
        rec = Recorder(ctx, "tags", size, registry, run)
        with serving(registry, ctx.work / registry, on_root(ctx.options, root)) as process:
            measure_listing(rec, process.url, TAGS, size)
            measure_first_page(rec, process.url, TAGS, size)


def measure_first_page(rec: Recorder, url: str, listing: Listing, expected: int) -> None:
    """
    The first page of C{listing} in pages of its C{walk_page}, as item
    C{first_page}; the reference, which ignores C{n} on tags, answers all.
    """
    if rec.skip("first_page"):
        return
    path = with_query(listing.path, f"n={listing.walk_page}")
    reading = timed_get(url, path, rec.ctx.timeout, rec.ctx.repeats)
    rec.reading("first_page", reading)
    if not reading.timed_out:
        names = json.loads(reading.body)[listing.key] or []
        paged = rec.registry != "reference"
        wanted = min(listing.walk_page, expected) if paged else expected
        rec.check_names("first_page", names, wanted)


# -- referrers ---------------------------------------------------------------------------------


def put_manifest(
    client: http.client.HTTPConnection, name: str, reference: str, document: dict[str, Any]
) -> StoredBlob:
    """Push a manifest document; its bytes and digest."""
    manifest = StoredBlob.of(json.dumps(document).encode())
    client.request(
        "PUT",
        f"/v2/{name}/manifests/{reference}",
        body=manifest.data,
        headers={"Content-Type": document["mediaType"]},
    )
    expect(client.getresponse(), 201, f"pushing manifest {reference}")
    return manifest


def push_blob(client: http.client.HTTPConnection, base_url: str, name: str, data: bytes) -> str:
    """C{POST}, then the whole blob in one C{PUT ?digest=}; its digest."""
    blob = StoredBlob.of(data)
    client.request("POST", f"/v2/{name}/blobs/uploads/")
    response = client.getresponse()
    expect(response, 202, "starting an upload")
    location = target(base_url, response.getheader("Location") or "")
    client.request(
        "PUT",
        with_query(location, f"digest={blob.digest}"),
        body=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    response = client.getresponse()
    expect(response, 201, "committing a blob")
    if response.getheader("Docker-Content-Digest") != blob.digest:
        raise RuntimeError(f"committed {response.getheader('Docker-Content-Digest')}")
    return blob.digest


def referrers_folder(ctx: Context, size: int) -> tuple[Path, str]:
    """
    A storage root with a subject image and C{size} referrers of it, and
    the referrers tag's index, pushed through txregistry; the root and the
    subject's digest.
    """
    root = ctx.work / f"referrers-{size}"
    options = on_root(ctx.options, root)
    with serving("txregistry", ctx.work / "referrers-push", options) as process:
        url = process.url
        client = connection(url, timeout=120)
        try:
            image = SharedImage.make()
            for blob in (image.config, image.layer):
                push_blob(client, url, REFERRERS_REPOSITORY, blob.data)
            subject = put_manifest(
                client, REFERRERS_REPOSITORY, "latest", json.loads(image.manifest.data)
            )
            empty = push_blob(client, url, REFERRERS_REPOSITORY, b"{}")
        finally:
            client.close()
        local = threading.local()
        clients: list[http.client.HTTPConnection] = []

        def push_referrer(index: int) -> dict[str, Any]:
            if not hasattr(local, "client"):
                local.client = connection(url, timeout=120)
                clients.append(local.client)
            document = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": ARTIFACT_TYPE,
                "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
                "layers": [{"mediaType": OCI_EMPTY, "digest": empty, "size": 2}],
                "subject": {
                    "mediaType": OCI_MANIFEST,
                    "digest": subject.digest,
                    "size": len(subject.data),
                },
                "annotations": {"org.example.index": str(index)},
            }
            manifest = StoredBlob.of(json.dumps(document).encode())
            put_manifest(local.client, REFERRERS_REPOSITORY, manifest.digest, document)
            return {
                "mediaType": OCI_MANIFEST,
                "digest": manifest.digest,
                "size": len(manifest.data),
                "artifactType": ARTIFACT_TYPE,
                "annotations": document["annotations"],
            }

        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
                descriptors = list(pool.map(push_referrer, range(size)))
        finally:
            for each in clients:
                each.close()
        client = connection(url, timeout=120)
        try:
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
            put_manifest(client, REFERRERS_REPOSITORY, f"sha256-{subject.hex}", index)
        finally:
            client.close()
    return root, subject.digest


def bench_referrers(ctx: Context, size: int, run: int, order: Sequence[str]) -> None:
    """C{size} referrers of one manifest: the referrers API, or the tag schema's index."""
    root, subject = referrers_folder(ctx, size)
    fallback = f"/v2/{REFERRERS_REPOSITORY}/manifests/{subject.replace(':', '-')}"
    api = f"/v2/{REFERRERS_REPOSITORY}/referrers/{subject}"
    try:
        for registry in order:
            rec = Recorder(ctx, "referrers", size, registry, run)
            with serving(registry, ctx.work / registry, on_root(ctx.options, root)) as process:
                listing = api if registry == "txregistry" else fallback
                for item, path in (("listing", listing), ("fallback", fallback)):
                    reading = timed_get(process.url, path, ctx.timeout, ctx.repeats, OCI_INDEX)
                    rec.reading(item, reading, path=path)
                    if reading.timed_out:
                        continue
                    manifests = json.loads(reading.body).get("manifests") or []
                    if len(manifests) != size:
                        ctx.results.fail(
                            f"referrers: {registry}'s {path} lists {len(manifests)} "
                            f"manifests, {size} expected"
                        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- many small blobs ---------------------------------------------------------------------------


@dataclass
class ManyPushes:
    """The push of many small blobs: time, rate, failures, CPU of each side."""

    seconds: float
    rate: float
    errors: dict[str, int]
    registry_cpu: float
    client_cpu: float


def push_many(url: str, pid: int, blobs: Sequence[bytes], threads: int) -> ManyPushes:
    """
    C{threads} threads, each on a connection of its own opened beforehand,
    released together, push C{blobs} between them; the rate counts the
    blobs pushed without error.
    """
    ready = threading.Barrier(threads + 1)
    queue = iter(range(len(blobs)))
    lock = threading.Lock()
    errors: Counter[str] = Counter()

    def pusher() -> None:
        client = connection(url, timeout=120)
        client.connect()
        ready.wait()
        try:
            while True:
                with lock:
                    index = next(queue, None)
                if index is None:
                    return
                try:
                    push_blob(client, url, PUSH_REPOSITORY, blobs[index])
                except Exception as error:
                    with lock:
                        errors[f"{type(error).__name__}: {error}"[:200]] += 1
                    client.close()
                    client = connection(url, timeout=120)
        finally:
            client.close()

    workers = [threading.Thread(target=pusher, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    phase = Phase()
    with Measure(pid, phase):
        client_before = os.times()
        ready.wait()
        for worker in workers:
            worker.join()
        client_after = os.times()
    elapsed = phase.seconds
    client_cpu = (client_after.user - client_before.user) + (
        client_after.system - client_before.system
    )
    return ManyPushes(
        seconds=elapsed,
        rate=(len(blobs) - errors.total()) / elapsed,
        errors=dict(errors),
        registry_cpu=100 * phase.cpu_seconds / elapsed,
        client_cpu=100 * client_cpu / elapsed,
    )


def bench_push(ctx: Context, size: int, run: int, order: Sequence[str]) -> None:
    """C{size} distinct small blobs pushed at once into a fresh registry."""
    blobs = [os.urandom(BLOB_BYTES) for _ in range(size)]
    for registry in order:
        rec = Recorder(ctx, "push", size, registry, run)
        workdir = ctx.work / f"{registry}-push"
        try:
            with serving(registry, workdir, ctx.options) as process:
                pushes = push_many(process.url, process.pid, blobs, ctx.push_threads)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        failed = sum(pushes.errors.values())
        rec.add("rate", pushes.rate, seconds=pushes.seconds, errors=pushes.errors)
        rec.add("registry_cpu", pushes.registry_cpu)
        rec.add("client_cpu", pushes.client_cpu)
        print(
            f"    {registry}: {pushes.rate:.0f} blobs/s ({pushes.seconds:.2f} s, {failed} errors)",
            flush=True,
        )
        if failed:
            ctx.results.fail(f"push: {registry} failed {failed} of {size} pushes: {pushes.errors}")


# -- a many-layer image ---------------------------------------------------------------------------


def image_folder(scratch: Path, layers: int) -> str:
    """The C{oci:} reference of a C{layers}-layer image, built once and kept."""
    folder = scratch / f"image-{layers}x{LAYER_BYTES}-v{LAYOUT_VERSION}"
    marker = folder / "complete.json"
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        print(f"  building a {layers}-layer image with umoci in {folder}", flush=True)
        began = time.perf_counter()
        built = build_image(folder, LAYER_BYTES, layers)
        marker.write_text(json.dumps({"reference": built, "layers": layers}) + "\n")
        print(f"  built in {time.perf_counter() - began:.1f} s", flush=True)
    return str(json.loads(marker.read_text())["reference"])


def bench_layers(ctx: Context, size: int, run: int, order: Sequence[str]) -> None:
    """skopeo copies a C{size}-layer image into a fresh registry, then out of it."""
    image = image_folder(ctx.scratch, size)
    skopeo = Skopeo(ctx.work / "skopeo")
    for registry in order:
        rec = Recorder(ctx, "layers", size, registry, run)
        workdir = ctx.work / f"{registry}-layers"
        try:
            with serving(registry, workdir, ctx.options) as process:
                remote = f"docker://127.0.0.1:{process.port}/{LAYERS_REPOSITORY}:latest"
                pushed = skopeo.copy(image, remote, "--dest-tls-verify=false")
                destination = workdir / "pulled"
                pulled = skopeo.copy(remote, f"oci:{destination}:latest", "--src-tls-verify=false")
                blobs = len(list((destination / "blobs" / "sha256").iterdir()))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        rec.add("push", pushed)
        rec.add("pull", pulled, blobs=blobs)
        print(f"    {registry}: push {pushed:.2f} s, pull {pulled:.2f} s", flush=True)
        if blobs < size + 2:
            ctx.results.fail(f"layers: {registry}: pulled {blobs} blobs, {size + 2} expected")


# -- idle connections -----------------------------------------------------------------------------


def raise_open_files(needed: int) -> None:
    """Raise our soft open-file limit (the registries inherit it) to C{needed} if we may."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def get_base(client: http.client.HTTPConnection) -> None:
    """C{GET /v2/} on C{client}; it must answer 200."""
    client.request("GET", "/v2/")
    expect(client.getresponse(), 200, "GET /v2/")


def bench_idle(ctx: Context, size: int, run: int, order: Sequence[str]) -> None:
    """C{size} idle keep-alive connections held on a fresh registry: its memory, its answers."""
    for registry in order:
        rec = Recorder(ctx, "idle", size, registry, run)
        workdir = ctx.work / f"{registry}-idle"
        held: list[http.client.HTTPConnection] = []
        try:
            with serving(registry, workdir, ctx.options) as process:
                warm = connection(process.url, timeout=30)
                for _ in range(20):
                    get_base(warm)
                warm.close()
                time.sleep(0.5)
                before = rss_mb(process.pid)
                began = time.perf_counter()
                for _ in range(size):
                    client = connection(process.url, timeout=30)
                    get_base(client)
                    held.append(client)
                opened = time.perf_counter() - began
                time.sleep(1.0)
                during = rss_mb(process.pid)
                fresh_times = []
                for _ in range(5):
                    fresh = connection(process.url, timeout=30)
                    began = time.perf_counter()
                    get_base(fresh)
                    fresh_times.append(1000 * (time.perf_counter() - began))
                    fresh.close()
                fresh_ms = statistics.median(fresh_times)
                answered = 0
                for client in held:
                    try:
                        get_base(client)
                        answered += 1
                    except (OSError, http.client.HTTPException, RuntimeError):
                        pass
        finally:
            for client in held:
                client.close()
            shutil.rmtree(workdir, ignore_errors=True)
        rec.add("rss_before", before)
        rec.add("rss_held", during, open_seconds=opened)
        rec.add("kb_per_connection", (during - before) * 1000 / size)
        rec.add("fresh_get", fresh_ms, samples=fresh_times)
        rec.add("held_answered", answered)
        print(
            f"    {registry}: RSS {before:.1f} -> {during:.1f} MB with {size} held "
            f"(opened in {opened:.2f} s), fresh GET {fresh_ms:.1f} ms, "
            f"{answered}/{size} held answered after",
            flush=True,
        )


# -- S3 ---------------------------------------------------------------------------------------


class QuietServer(http.server.ThreadingHTTPServer):
    """
    A threaded HTTP server that says nothing of clients that went away: a
    registry stopped after a timeout drops its connections mid-request.
    """

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Print what went wrong, unless the client just left."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class CountingProxy:
    """
    A reverse proxy on 127.0.0.1 in front of the S3 server that counts the
    requests going through it, by kind (C{list}, C{get}, C{head}, ...).
    Request bodies need a C{Content-Length}; answers are read whole, then
    sent on (the workloads read small objects and listings).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.upstream = http.client.HTTPConnection(
                    "127.0.0.1", proxy.upstream_port, timeout=600
                )

            def finish(self) -> None:
                super().finish()
                self.upstream.close()

            def forward(self) -> None:
                """Send the request on to the S3 server, and its answer back."""
                proxy.count(self.command, self.path)
                length = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding"):
                    self.send_error(501, "the counting proxy takes no chunked bodies")
                    return
                body = self.rfile.read(length) if length else None
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in ("connection", "keep-alive", "proxy-connection")
                }
                self.upstream.request(self.command, self.path, body=body, headers=headers)
                response = self.upstream.getresponse()
                data = response.read()
                self.send_response_only(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(name, value)
                if self.command == "HEAD":
                    self.send_header("Content-Length", response.getheader("Content-Length", "0"))
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def count(self, method: str, path: str) -> None:
        """Count a request by kind: C{list} (a bucket listing) or its method."""
        parts = urlsplit(path)
        query = parse_qs(parts.query, keep_blank_values=True)
        is_bucket = parts.path.strip("/").count("/") == 0
        if method == "GET" and is_bucket and ("list-type" in query or "prefix" in query):
            kind = "list"
        else:
            kind = method.lower()
        with self._lock:
            self.counts[kind] += 1

    def snapshot(self) -> Counter[str]:
        """The requests so far, by kind."""
        with self._lock:
            return Counter(self.counts)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def put_objects(port: int, bucket: str, files: Iterable[tuple[str, bytes]]) -> int:
    """
    Put C{files} (paths below C{docker/registry/v2}) into C{bucket} under
    the registries' root, with 8 threads on keep-alive connections (moto
    takes unsigned requests); how many.
    """
    local = threading.local()

    def put(item: tuple[str, bytes]) -> None:
        if not hasattr(local, "client"):
            local.client = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        relative, data = item
        local.client.request("PUT", f"/{bucket}/{S3_ROOT}/{V2}/{relative}", body=data)
        expect(local.client.getresponse(), 200, f"putting {relative}")

    count = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for _ in pool.map(put, files):
            count += 1
    return count


class S3Buckets:
    """
    moto's S3 server and the counting proxy in front of it, started at the
    first use and stopped with C{stack}; for each size, a bucket with a
    catalog of that many repositories and one with a repository of that
    many tags, laid out once per invocation (moto keeps them in memory).
    """

    def __init__(self, workdir: Path, stack: ExitStack) -> None:
        self.server = stack.enter_context(S3ServerProcess(workdir))
        self.proxy = stack.enter_context(CountingProxy(self.server.port))
        self.laid_out: dict[int, float] = {}

    def bucket(self, kind: str, size: int) -> str:
        """The bucket of C{kind} (C{"catalog"}, C{"tags"}) at C{size}, laid out now if need be."""
        if size not in self.laid_out:
            began = time.perf_counter()
            print(f"  laying out {size} repositories and {size} tags in moto", flush=True)
            count = 0
            for each in ("catalog", "tags"):
                self.server.create_bucket(f"{each}-{size}")
                files = (
                    item
                    for start, stop in parts(size, 2000)
                    for item in layout_files(each, start, stop)
                )
                count += put_objects(self.server.port, f"{each}-{size}", files)
            self.laid_out[size] = time.perf_counter() - began
            print(f"  put {count} objects in {self.laid_out[size]:.1f} s", flush=True)
        return f"{kind}-{size}"

    def sections(self, registry: str, bucket: str) -> dict[str, Any]:
        """The registry's storage sections for C{bucket}, through the counting proxy."""
        sections = {
            **self.server.storage_parameters(bucket, f"/{S3_ROOT}"),
            "redirect": {"disable": True},
        }
        sections["s3"]["regionendpoint"] = self.proxy.url
        if registry == "reference":
            # Distribution 2.8 has no forcepathstyle; with a regionendpoint, it
            # addresses buckets by path anyway.
            del sections["s3"]["forcepathstyle"]
        return sections


def bench_s3(ctx: Context, size: int, run: int, order: Sequence[str]) -> None:
    """The catalog and the tags of C{size} in moto's buckets: reads, walks, bucket requests."""
    if ctx.s3 is None:
        ctx.s3 = S3Buckets(ctx.work / "s3", ctx.stack)
    s3 = ctx.s3
    listings = {
        "catalog": dataclasses.replace(CATALOG, items=("catalog_first_page", "catalog_walk")),
        "tags": dataclasses.replace(TAGS, items=("tags_whole", "tags_walk")),
    }
    for registry in order:
        rec = Recorder(ctx, "s3", size, registry, run)
        for kind, listing in listings.items():
            sections = s3.sections(registry, s3.bucket(kind, size))
            workdir = ctx.work / f"{registry}-s3"
            try:
                with serving(registry, workdir, ctx.options, sections) as process:
                    measure_listing(rec, process.url, listing, size, s3.proxy)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)


# -- the report ---------------------------------------------------------------------------------


@dataclass
class Figure:
    """The summary of one item at one size for one registry."""

    value: float | None
    bound: bool
    runs: int
    detail: dict[str, Any]


def summarize(results: Results) -> dict[str, dict[str, dict[int, dict[str, Figure]]]]:
    """
    Medians by workload, item, size and registry; a figure that hit the
    timeout in any round is the largest such lower bound.
    """
    grouped: dict[tuple[str, str, int, str], list[Sample]] = {}
    for sample in results.samples:
        key = (sample.workload, sample.item, sample.size, sample.registry)
        grouped.setdefault(key, []).append(sample)
    summary: dict[str, dict[str, dict[int, dict[str, Figure]]]] = {}
    for (workload, item, size, registry), samples in grouped.items():
        bounds = [s for s in samples if s.bound and s.value is not None]
        values = [s.value for s in samples if not s.bound and s.value is not None]
        if bounds:
            # The timeout that was hit rather than one that was only assumed.
            worst = max(bounds, key=lambda s: ("skipped" not in s.detail, s.value or 0.0))
            figure = Figure(worst.value, True, len(samples), worst.detail)
        else:
            median = statistics.median(values) if values else None
            figure = Figure(median, False, len(samples), samples[-1].detail)
        summary.setdefault(workload, {}).setdefault(item, {}).setdefault(size, {})[registry] = (
            figure
        )
    return summary


@dataclass
class Ratio:
    """A ratio such that above 1 txregistry is better; C{bound}: C{"<"}, C{">"} or C{""}."""

    value: float | None
    bound: str = ""

    def text(self) -> str:
        """The ratio as the table shows it (C{n/a}: unknown)."""
        if self.value is None:
            return "n/a"
        # Two significant digits at least, however far below 1.
        shown = f"{self.value:.2f}" if self.value >= 0.1 else f"{self.value:.2g}"
        return f"{self.bound}{shown}"

    def meets(self, target: float) -> bool | None:
        """Whether the ratio is at least C{target} (C{None}: cannot tell)."""
        if self.value is None:
            return None
        if self.bound == "<":
            return False if self.value <= target else None
        if self.bound == ">":
            return True if self.value >= target else None
        return self.value >= target


def ratio(item: Item, figures: dict[str, Figure]) -> Ratio:
    """txregistry against the reference, such that above 1 txregistry is better."""
    tx, ref = figures.get("txregistry"), figures.get("reference")
    if item.better is None or tx is None or ref is None or not tx.value or not ref.value:
        return Ratio(None)
    if item.better == "lower":
        value, tx_bound, ref_bound = ref.value / tx.value, "<", ">"
    else:
        value, tx_bound, ref_bound = tx.value / ref.value, ">", "<"
    if tx.bound and ref.bound:
        return Ratio(None)
    if tx.bound:
        return Ratio(value, tx_bound)
    if ref.bound:
        return Ratio(value, ref_bound)
    return Ratio(value)


def growth(before: tuple[int, Figure] | None, after: tuple[int, Figure]) -> str:
    """C{x10 → x9.8}: how much the figure grew as the size did."""
    if before is None:
        return "-"
    (size0, figure0), (size1, figure1) = before, after
    if not figure0.value or figure1.value is None or figure0.bound:
        return "n/a"
    prefix = ">" if figure1.bound else ""
    return f"x{size1 / size0:g} → {prefix}x{figure1.value / figure0.value:.1f}"


def cell(figure: Figure | None, unit: str) -> str:
    """A figure as the table shows it: C{>} before a lower bound."""
    if figure is None or figure.value is None:
        return "-"
    if unit == "s":
        digits = 4 if figure.value < 0.01 else 3
    else:
        digits = 1 if unit in ("ms", "MB", "KB", "req", "%") else 0
    text = f"{figure.value:.{digits}f}"
    return f">{text}" if figure.bound else text


def note(item: Item, figures: dict[str, Figure]) -> str:
    """What the table says beside a row: pages walked (txregistry/reference), timeouts."""
    notes: list[str] = []
    pages = [figures[r].detail.get("pages") if r in figures else None for r in REGISTRIES]
    if item.key.endswith("walk") and any(page is not None for page in pages):
        notes.append("pages " + "/".join("-" if page is None else str(page) for page in pages))
    for registry in REGISTRIES:
        figure = figures.get(registry)
        if figure is None or not figure.bound or item.unit != "s":
            continue
        skipped = figure.detail.get("skipped")
        notes.append(f"{registry}: {'not run, ' + skipped if skipped else 'timed out'}")
    return "; ".join(notes)


def tables(summary: dict[str, dict[str, dict[int, dict[str, Figure]]]], runs: int) -> str:
    """A table per workload: rows per item and size."""
    out: list[str] = []
    heading = f"median of {runs} rounds" if runs > 1 else "1 round"
    for workload in WORKLOADS:
        if workload not in summary:
            continue
        out.append("")
        out.append(f"== {workload}: {HEADINGS[workload]} ({heading})")
        out.append(
            "   ratio > 1: txregistry better (reference time / txregistry time; "
            "txregistry rate / reference rate)"
        )
        out.append(
            f"{'item':<36}{'size':>8}{'txregistry':>12}{'reference':>12}{'ratio':>8}"
            f"  {'tx growth':<16}{'ref growth':<16}notes"
        )
        for item in ITEMS[workload]:
            by_size = summary[workload].get(item.key)
            if not by_size:
                continue
            previous: dict[str, tuple[int, Figure] | None] = dict.fromkeys(REGISTRIES)
            for size in sorted(by_size):
                figures = by_size[size]
                growths = []
                for registry in REGISTRIES:
                    figure = figures.get(registry)
                    if figure is None or not item.growth:
                        growths.append("-" if item.growth or figure is None else "")
                        continue
                    growths.append(growth(previous[registry], (size, figure)))
                    previous[registry] = (size, figure)
                label = f"{item.label}, {item.unit}"
                out.append(
                    f"{label:<36}{size:>8}{cell(figures.get('txregistry'), item.unit):>12}"
                    f"{cell(figures.get('reference'), item.unit):>12}"
                    f"{ratio(item, figures).text():>8}  {growths[0]:<16}{growths[1]:<16}"
                    f"{note(item, figures)}"
                )
    return "\n".join(out)


def targets(summary: dict[str, dict[str, dict[int, dict[str, Figure]]]]) -> list[dict[str, Any]]:
    """Every target of the issue the run measured, with its verdict."""
    found: list[dict[str, Any]] = []
    for workload in WORKLOADS:
        for item in ITEMS[workload]:
            if item.target is None:
                continue
            for size, figures in sorted(summary.get(workload, {}).get(item.key, {}).items()):
                value = ratio(item, figures)
                found.append(
                    {
                        "workload": workload,
                        "item": item.key,
                        "label": item.label,
                        "size": size,
                        "target": item.target,
                        "ratio": value.value,
                        "ratio_bound": value.bound,
                        "met": value.meets(item.target),
                    }
                )
    return found


def targets_text(found: list[dict[str, Any]]) -> str:
    """The targets section of the print-out."""
    lines = ["", "== targets (ratio > 1: txregistry better)"]
    for entry in found:
        met = entry["met"]
        verdict = "n/a" if met is None else "PASS" if met else "FAIL"
        shown = Ratio(entry["ratio"], entry["ratio_bound"]).text()
        label = f"{entry['workload']}: {entry['label']} at {entry['size']}"
        lines.append(f"{label:<52} ratio {shown:>8} >= {entry['target']:.1f}  {verdict}")
    return "\n".join(lines)


def to_json(summary: dict[str, dict[str, dict[int, dict[str, Figure]]]]) -> dict[str, Any]:
    """The summary with each row's ratio and growth, for the JSON file."""
    document: dict[str, Any] = {}
    for workload, items in summary.items():
        for key, by_size in items.items():
            item = next((i for i in ITEMS[workload] if i.key == key), Item(key, key, ""))
            rows = document.setdefault(workload, {}).setdefault(key, {})
            previous: dict[str, tuple[int, Figure] | None] = dict.fromkeys(REGISTRIES)
            for size in sorted(by_size):
                figures = by_size[size]
                row: dict[str, Any] = {"unit": item.unit}
                for registry, figure in figures.items():
                    row[registry] = dataclasses.asdict(figure)
                    if item.growth:
                        row[registry]["growth"] = growth(previous[registry], (size, figure))
                        previous[registry] = (size, figure)
                value = ratio(item, figures)
                row["ratio"] = value.value
                row["ratio_bound"] = value.bound
                rows[str(size)] = row
    return document


# -- main -------------------------------------------------------------------------------------


def parse_sizes(texts: Sequence[str], workloads: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """C{--sizes} values: C{WORKLOAD=N,N}, or C{N,N} for every chosen workload."""
    sizes: dict[str, tuple[int, ...]] = {}
    for text in texts:
        name, separator, numbers = text.rpartition("=")
        try:
            values = tuple(int(number.replace("_", "")) for number in numbers.split(","))
        except ValueError:
            raise SystemExit(f"--sizes {text!r}: sizes are whole numbers") from None
        if any(value <= 0 for value in values):
            raise SystemExit(f"--sizes {text!r}: sizes are positive")
        if separator and name not in WORKLOADS:
            raise SystemExit(f"--sizes {text!r}: {name!r} is not one of {', '.join(WORKLOADS)}")
        for workload in [name] if separator else workloads:
            sizes[workload] = tuple(sorted(values))
    return sizes


def _stop(signal_number: int, _frame: object) -> None:
    """On C{SIGTERM}: unwind, so that the registries are stopped."""
    raise SystemExit(128 + signal_number)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen workloads, print the tables, write C{--json}."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 round, short timeout")
    parser.add_argument("--runs", type=int, help="rounds, figures are medians (default 3; quick 1)")
    parser.add_argument(
        "--only", action="append", choices=WORKLOADS, help="run only this workload (repeatable)"
    )
    parser.add_argument(
        "--sizes",
        action="append",
        default=[],
        metavar="[WORKLOAD=]N,N",
        help="sizes of a workload, or of every chosen one (repeatable)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help="seconds a walk or a request may take before it is reported as timed out "
        "(default 600; quick 60)",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed GETs of a single read (within 5 s)"
    )
    parser.add_argument("--push-threads", type=int, default=16, help="client threads of push")
    parser.add_argument(
        "--scratch",
        type=Path,
        default=Path(tempfile.gettempdir()) / "txregistry-scale-bench",
        help="where laid-out folders and the image are kept between runs",
    )
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    add_registry_options(parser)
    args = parser.parse_args(argv)

    workloads = [w for w in WORKLOADS if not args.only or w in args.only]
    sizes = {**(QUICK_SIZES if args.quick else FULL_SIZES), **parse_sizes(args.sizes, workloads)}
    runs = args.runs or (1 if args.quick else 3)
    timeout = args.timeout or (60.0 if args.quick else 600.0)
    for tool in ("docker-registry", *(("skopeo", "umoci") if "layers" in workloads else ())):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (bash bench/run.sh scale installs it)")
    options = registry_options(args, DEFAULT_CONFIG)
    raise_open_files(max(sizes["idle"]) + 2000 if "idle" in workloads else 4096)
    signal.signal(signal.SIGTERM, _stop)

    args.scratch.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=args.scratch))
    results = Results()
    version = source_version()
    load_before = os.getloadavg()
    began = time.perf_counter()
    print(
        f"txregistry at {version}; workloads {', '.join(workloads)}; {runs} round(s); "
        f"timeout {timeout:g} s; load average {load_before[0]:.2f}",
        flush=True,
    )
    benches: dict[str, Callable[[Context, int, int, Sequence[str]], None]] = {
        "catalog": bench_catalog,
        "tags": bench_tags,
        "referrers": bench_referrers,
        "push": bench_push,
        "layers": bench_layers,
        "idle": bench_idle,
        "s3": bench_s3,
    }
    try:
        with ExitStack() as stack:
            ctx = Context(
                args.scratch,
                work,
                options,
                results,
                timeout,
                args.repeats,
                args.push_threads,
                stack,
            )
            for run in range(runs):
                for workload in workloads:
                    for size_index, size in enumerate(sizes[workload]):
                        order = alternated(REGISTRIES, run + size_index)
                        print(f"round {run + 1}/{runs}: {workload} at {size}", flush=True)
                        benches[workload](ctx, size, run, order)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    summary = summarize(results)
    found = targets(summary)
    elapsed = time.perf_counter() - began
    load_after = os.getloadavg()
    print(tables(summary, runs))
    print(targets_text(found))
    if "referrers" in workloads:
        print(
            "\nreferrers: Distribution 2.8 has no referrers API; its figure is a GET of the "
            "referrers tag (sha256-<hex>), the fallback of OCI clients, pushed beforehand."
        )
    if "s3" in workloads:
        print(
            "s3: moto answers a listing by scanning every key of the bucket, so times on moto "
            "grow with listings x keys; the request counts are what carry over to S3, except "
            "that moto's ListObjects (v1, which Distribution 2.8 lists a folder with) ignores "
            "max-keys for common prefixes: one request where S3 would page by 1000."
        )
    if results.failures:
        print("\nCHECKS FAILED:\n  " + "\n  ".join(results.failures))
    print(
        f"\ntotal {elapsed:.0f} s on {os.cpu_count()} CPUs; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    if args.json is not None:
        document = {
            "txregistry_version": version,
            "workloads": workloads,
            "sizes": {w: list(sizes[w]) for w in workloads},
            "runs": runs,
            "timeout_s": timeout,
            "ratio": "above 1: txregistry better (reference s / txregistry s; "
            "txregistry rate / reference rate)",
            "registries": options.describe(),
            "summary": to_json(summary),
            "targets": found,
            "checks_failed": results.failures,
            "samples": [dataclasses.asdict(sample) for sample in results.samples],
            "seconds": elapsed,
            "load_average": {"before": load_before, "after": load_after},
            "machine": machine(),
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
