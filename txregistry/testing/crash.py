# -*- test-case-name: tests.test_crash -*-
"""
Crash at any moment: a registry process on filesystem storage takes
concurrent pushes (monolithic and chunked uploads, manifests by tag and by
digest, tag moves, deletes) and is killed with C{SIGKILL} at a random
moment, then started again on the same storage and checked, round after
round (L{CrashHarness}).

After each restart: every blob and manifest whose write was acknowledged
reads back whole and byte-identical; what an acknowledged delete removed
stays removed; each tag points at its last acknowledged manifest or at one
written after it whose answer was lost (or is gone, if a delete's answer
was lost); every interrupted chunked upload either continues to a verified
blob or answers 404 C{BLOB_UPLOAD_UNKNOWN}; the registry logged no
traceback; and C{txregistry check} finds nothing wrong in storage.

Each worker owns a repository, so what it saw acknowledged is all that
decides what its repository must hold.  The seed fixes every worker's
operations, their sizes and the moment of each kill; the interleaving of
the workers' requests is the scheduler's.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from txregistry.registry.manifest_formats import OCI_MANIFEST
from txregistry.testing.client import HTTPResponse, request
from txregistry.testing.manifests import oci_image
from txregistry.testing.process import RegistryProcess, base_config

# Uncompressed layers: the harness's blobs are random bytes.
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
TAGS = ("t0", "t1", "t2", "t3")
# Lines in the registry's log that mean something went wrong inside it.
LOG_PROBLEMS = ("Traceback", "Unhandled", "unexpected error")


def sha256(data: bytes) -> str:
    """C{sha256:<hex>} of C{data}."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Unanswered(Exception):
    """A request got no answer: the registry was killed under it (or was down)."""


@dataclass
class Sizes:
    """How large what the workers write is."""

    blob_max: int = 64 * 1024
    chunk: int = 16 * 1024
    chunks_max: int = 4


@dataclass
class Upload:
    """A chunked upload the registry acknowledged starting, with its bytes."""

    location: str
    data: bytes


@dataclass
class RepositoryLedger:
    """
    What one worker's repository must hold, from what was acknowledged.

    @ivar blobs: digest to size, of blobs whose push was acknowledged and
        not deleted since.
    @ivar blobs_maybe: digest to size, of blobs whose push or delete got no
        answer: either stored whole or not there.
    @ivar blobs_gone: blobs whose delete was acknowledged.
    @ivar referenced: blobs a manifest (perhaps) stored references: never
        deleted, so that storage stays consistent.
    @ivar manifests: digest to content, acknowledged and not deleted.
    @ivar manifests_maybe: the same, for writes or deletes with no answer.
    @ivar manifests_gone: manifests whose delete was acknowledged.
    @ivar tags: tag to what it may point at (L{None}: no tag at all).
    @ivar contents: every manifest ever sent, by digest.
    @ivar interrupted: chunked uploads cut off by a kill.
    """

    name: str
    blobs: dict[str, int] = field(default_factory=dict)
    blobs_maybe: dict[str, int] = field(default_factory=dict)
    blobs_gone: set[str] = field(default_factory=set)
    referenced: set[str] = field(default_factory=set)
    manifests: dict[str, bytes] = field(default_factory=dict)
    manifests_maybe: dict[str, bytes] = field(default_factory=dict)
    manifests_gone: set[str] = field(default_factory=set)
    tags: dict[str, set[str | None]] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)
    interrupted: list[Upload] = field(default_factory=list)


@dataclass
class Summary:
    """What a run did and found."""

    kills: int = 0
    acknowledged: int = 0
    unanswered: int = 0
    checks: int = 0
    continued: int = 0
    upload_unknown: int = 0
    failures: list[str] = field(default_factory=list)

    def text(self) -> str:
        """The summary in a few lines."""
        lines = [
            f"kills: {self.kills}",
            f"operations acknowledged: {self.acknowledged} (unanswered: {self.unanswered})",
            f"interrupted uploads: {self.continued} continued, "
            f"{self.upload_unknown} answered BLOB_UPLOAD_UNKNOWN",
            f"checks made: {self.checks}",
            f"failures: {len(self.failures)}",
        ]
        lines += [f"  {failure}" for failure in self.failures]
        return "\n".join(lines)


class Worker:
    """
    Pushes to one repository until told to stop or the registry stops
    answering, recording what was acknowledged in its ledger.
    """

    def __init__(
        self,
        harness: CrashHarness,
        ledger: RepositoryLedger,
        rng: random.Random,
    ) -> None:
        self.harness = harness
        self.ledger = ledger
        self.rng = rng

    # -- HTTP ------------------------------------------------------------------------

    def send(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> HTTPResponse:
        """One request; L{Unanswered} when no answer came."""
        try:
            response = request(
                method, self.harness.resolve(target), body, headers, timeout=self.harness.timeout
            )
        except OSError as error:  # refused, reset, closed early, timed out
            raise Unanswered(f"{method} {target}: {error!r}") from error
        if response.status >= 500:
            self.harness.fail(f"{method} {target}: {response.status} {response.body[:300]!r}")
        return response

    def expect(self, response: HTTPResponse, status: int, what: str) -> bool:
        if response.status == status:
            self.harness.count("acknowledged")
            return True
        self.harness.fail(f"{what}: {response.status} {response.body[:300]!r}")
        return False

    # -- operations ------------------------------------------------------------------

    def run(self) -> None:
        """Do random operations until the harness says stop or a request is unanswered."""
        operations = [
            (3, self.monolithic),
            (3, self.chunked),
            (3, self.manifest),
            (1, self.delete_blob),
            (1, self.delete_manifest),
            (1, self.delete_tag),
        ]
        weights = [weight for weight, _ in operations]
        try:
            while not self.harness.stopping.is_set():
                (operation,) = self.rng.choices([o for _, o in operations], weights)
                operation()
        except Unanswered:
            self.harness.count("unanswered")

    def _bytes(self) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, self.harness.sizes.blob_max))

    def monolithic(self) -> None:
        data = self._bytes()
        digest = sha256(data)
        self.ledger.blobs_maybe[digest] = len(data)
        response = self.send(
            "POST",
            f"{self.ledger.name}/blobs/uploads/?digest={digest}",
            data,
            {"Content-Type": "application/octet-stream"},
        )
        if self.expect(response, 201, f"monolithic POST {digest}"):
            self._blob_acknowledged(digest, len(data))

    def chunked(self) -> None:
        sizes = self.harness.sizes
        chunks = [
            self.rng.randbytes(self.rng.randint(1, sizes.chunk))
            for _ in range(self.rng.randint(1, sizes.chunks_max))
        ]
        data = b"".join(chunks)
        digest = sha256(data)
        response = self.send("POST", f"{self.ledger.name}/blobs/uploads/")
        if not self.expect(response, 202, "upload POST"):
            return
        upload = Upload(str(response.header("Location")), data)
        offset = 0
        try:
            last = self.rng.random() < 0.5  # the last chunk goes with the PUT
            for chunk in chunks[:-1] if last else chunks:
                response = self.send(
                    "PATCH",
                    upload.location,
                    chunk,
                    {
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                    },
                )
                if not self.expect(response, 202, "upload PATCH"):
                    return
                upload.location = str(response.header("Location"))
                offset += len(chunk)
            self.ledger.blobs_maybe[digest] = len(data)
            separator = "&" if "?" in upload.location else "?"
            response = self.send(
                "PUT",
                f"{upload.location}{separator}digest={digest}",
                chunks[-1] if last else None,
                {"Content-Type": "application/octet-stream"},
            )
        except Unanswered:
            self.ledger.interrupted.append(upload)
            raise
        if self.expect(response, 201, f"upload PUT {digest}"):
            self._blob_acknowledged(digest, len(data))

    def _blob_acknowledged(self, digest: str, size: int) -> None:
        self.ledger.blobs_maybe.pop(digest, None)
        self.ledger.blobs_gone.discard(digest)
        self.ledger.blobs[digest] = size

    def manifest(self) -> None:
        ledger = self.ledger
        if ledger.manifests and self.rng.random() < 0.3:
            # Move a tag to a manifest stored before.
            digest = self.rng.choice(sorted(ledger.manifests))
            content = ledger.manifests[digest]
        else:
            stored = sorted(ledger.blobs)
            if not stored:
                return self.monolithic()
            config, *layers = self.rng.sample(stored, min(len(stored), self.rng.randint(1, 3)))
            document = oci_image(
                (config, ledger.blobs[config]),
                [(layer, ledger.blobs[layer]) for layer in layers],
                OCI_LAYER,
                annotations={"crash.nonce": str(self.rng.getrandbits(64))},
            )
            content = json.dumps(document, indent=self.rng.choice([None, 2])).encode()
            digest = sha256(content)
            ledger.referenced.update([config, *layers])
        ledger.contents[digest] = content
        by_tag = self.rng.random() < 0.7
        reference = self.rng.choice(TAGS) if by_tag else digest
        if digest not in ledger.manifests:
            ledger.manifests_maybe[digest] = content
        if by_tag:
            ledger.tags.setdefault(reference, {None}).add(digest)
        response = self.send(
            "PUT",
            f"{ledger.name}/manifests/{reference}",
            content,
            {"Content-Type": OCI_MANIFEST},
        )
        if not self.expect(response, 201, f"manifest PUT {reference}"):
            return
        ledger.manifests_maybe.pop(digest, None)
        ledger.manifests_gone.discard(digest)
        ledger.manifests[digest] = content
        if by_tag:
            ledger.tags[reference] = {digest}

    def delete_blob(self) -> None:
        ledger = self.ledger
        free = sorted(set(ledger.blobs) - ledger.referenced)
        if not free:
            return self.monolithic()
        digest = self.rng.choice(free)
        ledger.blobs_maybe[digest] = ledger.blobs.pop(digest)
        response = self.send("DELETE", f"{ledger.name}/blobs/{digest}")
        if self.expect(response, 202, f"blob DELETE {digest}"):
            del ledger.blobs_maybe[digest]
            ledger.blobs_gone.add(digest)

    def delete_manifest(self) -> None:
        ledger = self.ledger
        if not ledger.manifests:
            return self.manifest()
        digest = self.rng.choice(sorted(ledger.manifests))
        ledger.manifests_maybe[digest] = ledger.manifests.pop(digest)
        pointing = [tag for tag, allowed in ledger.tags.items() if digest in allowed]
        for tag in pointing:
            ledger.tags[tag].add(None)
        response = self.send("DELETE", f"{ledger.name}/manifests/{digest}")
        if not self.expect(response, 202, f"manifest DELETE {digest}"):
            return
        del ledger.manifests_maybe[digest]
        ledger.manifests_gone.add(digest)
        for tag in pointing:
            ledger.tags[tag].discard(digest)

    def delete_tag(self) -> None:
        ledger = self.ledger
        tags = sorted(tag for tag, allowed in ledger.tags.items() if allowed != {None})
        if not tags:
            return self.manifest()
        tag = self.rng.choice(tags)
        ledger.tags[tag].add(None)
        response = self.send("DELETE", f"{ledger.name}/manifests/{tag}")
        if response.status == 404 and None in ledger.tags[tag]:
            # Deleted by a manifest delete whose answer was lost.
            ledger.tags[tag] = {None}
            return
        if self.expect(response, 202, f"tag DELETE {tag}"):
            ledger.tags[tag] = {None}


class CrashHarness:
    """
    Rounds of concurrent pushes, each ended by C{SIGKILL} at a random
    moment, each followed by a restart on the same storage and the checks
    of the module docstring.

    @param workdir: where the storage root, config and log go.
    @param seed: fixes every operation, size and kill offset.
    @param workers: how many push concurrently, each to its own repository.
    @param window: the shortest and longest time, in seconds, a round runs
        before its kill.
    @param fsync: C{storage.filesystem.fsync}.
    @param rotate: after how many rounds the workers move on to new
        repositories (L{None}: never), to bound what each restart reads
        back; the old ones stay in storage, which C{check} still reads.
    """

    def __init__(
        self,
        workdir: Path,
        seed: int,
        *,
        workers: int = 4,
        sizes: Sizes | None = None,
        window: tuple[float, float] = (0.05, 0.6),
        fsync: bool = False,
        timeout: float = 20.0,
        rotate: int | None = None,
        log: Any = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.seed = seed
        self.rng = random.Random(seed)
        self.workers = workers
        self.sizes = sizes or Sizes()
        self.window = window
        self.timeout = timeout
        self.rotate = rotate
        self.log = log
        self.summary = Summary()
        self.stopping = threading.Event()
        self.round = 0
        self._lock = threading.Lock()
        self.root = self.workdir / "root"
        config = base_config(
            self.root,
            log={"level": "warn", "accesslog": {"disabled": True}},
            storage={
                "filesystem": {"rootdirectory": str(self.root), "fsync": fsync},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
        )
        self.process = RegistryProcess(self.workdir, config, name="crash")
        self.ledgers = [RepositoryLedger(f"crash/w{index}") for index in range(workers)]
        self._log_mark = 0

    # -- plumbing --------------------------------------------------------------------

    def resolve(self, target: str) -> str:
        """An absolute URL: C{target} below C{/v2/}, or a path or URL of the registry's."""
        if target.startswith("http"):
            target = "/" + target.split("/", 3)[3]
        if target.startswith("/"):
            return self.process.url + target
        return f"{self.process.url}/v2/{target}"

    def fail(self, what: str) -> None:
        """Record a failure, naming the round and seed."""
        with self._lock:
            self.summary.failures.append(f"seed {self.seed} round {self.round}: {what}")
        if self.log is not None:
            self.log(f"FAILURE seed {self.seed} round {self.round}: {what}")

    def count(self, what: str) -> None:
        """Add one to the summary's C{what}, from any worker."""
        with self._lock:
            setattr(self.summary, what, getattr(self.summary, what) + 1)

    def get(self, target: str, headers: dict[str, str] | None = None) -> HTTPResponse:
        response = request("GET", self.resolve(target), None, headers, timeout=self.timeout)
        if response.status >= 500:
            self.fail(f"GET {target}: {response.status} {response.body[:300]!r}")
        return response

    # -- the run ---------------------------------------------------------------------

    def run(self, kills: int) -> Summary:
        """Start the registry, then do C{kills} rounds; the summary."""
        self.process.start()
        port = self.process.port
        try:
            for number in range(kills):
                self.round = number
                if self.rotate and number and number % self.rotate == 0:
                    generation = number // self.rotate
                    self.ledgers = [
                        RepositoryLedger(f"crash/g{generation}/w{index}")
                        for index in range(self.workers)
                    ]
                self._round()
                check = self._start_check()
                self.process.start(port=port)
                self._log_problems()
                self._verify()
                self._finish_check(check)
                if self.log is not None:
                    self.log(
                        f"round {number}: {self.summary.acknowledged} acknowledged, "
                        f"{len(self.summary.failures)} failures"
                    )
        finally:
            self.process.stop()
        self._log_problems()
        return self.summary

    def _round(self) -> None:
        """Push concurrently, kill the registry at a random moment, wait for the workers."""
        self.stopping.clear()
        threads = [
            threading.Thread(
                target=Worker(
                    self, ledger, random.Random(f"{self.seed}/{self.round}/{ledger.name}")
                ).run,
                daemon=True,
            )
            for ledger in self.ledgers
        ]
        for thread in threads:
            thread.start()
        time.sleep(self.rng.uniform(*self.window))
        process = self.process.process
        assert process is not None
        process.kill()
        self.stopping.set()
        process.wait()
        self.summary.kills += 1
        for thread in threads:
            thread.join(self.timeout * 3)
            if thread.is_alive():
                self.fail("a worker did not stop after the kill")
        self.process.stop()  # closes the log

    def _log_problems(self) -> None:
        try:
            with open(self.process.log_path, "rb") as log:
                log.seek(self._log_mark)
                text = log.read().decode("utf-8", "replace")
                self._log_mark = log.tell()
        except OSError:
            return
        for line in text.splitlines():
            if any(problem in line for problem in LOG_PROBLEMS):
                self.fail(f"the registry logged: {line}")

    def _start_check(self) -> subprocess.Popen[bytes]:
        """
        C{txregistry check} on the storage, beside the restart: it only
        reads, and is made to run beside serving registries.
        """
        config = self.workdir / "crash-config.yml"
        return subprocess.Popen(
            [sys.executable, "-m", "txregistry", "check", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def _finish_check(self, check: subprocess.Popen[bytes]) -> None:
        output, _ = check.communicate(timeout=300)
        self.summary.checks += 1
        if check.returncode != 0:
            found = " | ".join(output.decode("utf-8", "replace").strip().splitlines())
            self.fail(f"txregistry check exited {check.returncode}: {found}")

    # -- after a restart -------------------------------------------------------------

    def _verify(self) -> None:
        for ledger in self.ledgers:
            self._verify_blobs(ledger)
            self._verify_manifests(ledger)
            self._verify_tags(ledger)
            self._verify_uploads(ledger)

    def _blob(self, ledger: RepositoryLedger, digest: str, size: int, must: bool) -> bool:
        """Whether the blob is there, whole; a failure if it must be, or is wrong."""
        self.summary.checks += 1
        response = self.get(f"{ledger.name}/blobs/{digest}")
        if response.status == 200:
            if sha256(response.body) != digest or len(response.body) != size:
                self.fail(
                    f"blob {ledger.name}@{digest}: {len(response.body)} bytes hashing to "
                    f"{sha256(response.body)}"
                )
            return True
        if response.status != 404 or must:
            self.fail(f"blob {ledger.name}@{digest}: {response.status} {response.body[:200]!r}")
        return False

    def _verify_blobs(self, ledger: RepositoryLedger) -> None:
        for digest, size in sorted(ledger.blobs.items()):
            self._blob(ledger, digest, size, must=True)
        for digest, size in sorted(ledger.blobs_maybe.items()):
            if self._blob(ledger, digest, size, must=False):
                ledger.blobs[digest] = size
            else:
                ledger.blobs_gone.add(digest)
        ledger.blobs_maybe.clear()
        for digest in sorted(ledger.blobs_gone):
            self.summary.checks += 1
            response = self.get(f"{ledger.name}/blobs/{digest}")
            if response.status != 404:
                self.fail(f"deleted blob {ledger.name}@{digest}: {response.status}")

    def _manifest(self, ledger: RepositoryLedger, reference: str) -> HTTPResponse:
        self.summary.checks += 1
        return self.get(f"{ledger.name}/manifests/{reference}", {"Accept": OCI_MANIFEST})

    def _verify_manifests(self, ledger: RepositoryLedger) -> None:
        for digest, content in sorted(ledger.manifests.items()):
            response = self._manifest(ledger, digest)
            if response.status != 200 or response.body != content:
                self.fail(f"manifest {ledger.name}@{digest}: {response.status}")
        for digest, content in sorted(ledger.manifests_maybe.items()):
            response = self._manifest(ledger, digest)
            if response.status == 200:
                if response.body != content:
                    self.fail(f"manifest {ledger.name}@{digest}: other content")
                ledger.manifests[digest] = content
            elif response.status == 404:
                ledger.manifests_gone.add(digest)
            else:
                self.fail(f"manifest {ledger.name}@{digest}: {response.status}")
        ledger.manifests_maybe.clear()
        for digest in sorted(ledger.manifests_gone):
            response = self._manifest(ledger, digest)
            if response.status != 404:
                self.fail(f"deleted manifest {ledger.name}@{digest}: {response.status}")

    def _verify_tags(self, ledger: RepositoryLedger) -> None:
        listed: set[str] = set()
        response = self.get(f"{ledger.name}/tags/list")
        if response.status == 200:
            listed = set(response.json().get("tags") or [])
        elif ledger.tags and response.status != 404:
            self.fail(f"tags of {ledger.name}: {response.status}")
        for tag, allowed in sorted(ledger.tags.items()):
            response = self._manifest(ledger, tag)
            if response.status == 404 and None in allowed:
                found: str | None = None
            elif response.status == 200:
                found = response.header("Docker-Content-Digest")
                if found not in allowed or response.body != ledger.contents.get(found or ""):
                    self.fail(f"tag {ledger.name}:{tag} is {found}, expected one of {allowed}")
                    continue
            else:
                self.fail(f"tag {ledger.name}:{tag}: {response.status}, expected one of {allowed}")
                continue
            if (found is not None) != (tag in listed):
                tag_folder = self.root / "docker/registry/v2/repositories" / ledger.name
                current = tag_folder / "_manifests/tags" / tag / "current/link"
                self.fail(
                    f"tag {ledger.name}:{tag} is {found}, listed: {tag in listed} "
                    f"(current link stored: {current.exists()})"
                )
            ledger.tags[tag] = {found}
            if found is not None and found not in ledger.manifests:
                self.fail(f"tag {ledger.name}:{tag} points at {found}, not stored")

    def _verify_uploads(self, ledger: RepositoryLedger) -> None:
        """An interrupted upload continues to a whole blob, or is unknown (404)."""
        interrupted, ledger.interrupted = ledger.interrupted, []
        for upload in interrupted:
            self.summary.checks += 1
            response = self.get(upload.location)
            if response.status == 404:
                if "BLOB_UPLOAD_UNKNOWN" not in response.error_codes():
                    self.fail(f"upload {upload.location}: 404 {response.body!r}")
                self.summary.upload_unknown += 1
                continue
            if response.status != 204:
                self.fail(f"upload {upload.location}: {response.status} {response.body!r}")
                continue
            end = int(str(response.header("Range")).split("-")[1])
            location = str(response.header("Location"))
            # "0-0" is said of an empty upload and of one of one byte.
            offsets = [end + 1, 0] if end == 0 else [end + 1]
            for offset in offsets:
                rest = upload.data[offset:]
                if not rest:
                    response = HTTPResponse(202, response.headers, b"")
                    break
                response = request(
                    "PATCH",
                    self.resolve(location),
                    rest,
                    {
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + len(rest) - 1}",
                    },
                    timeout=self.timeout,
                )
                if response.status != 416:
                    break
            if response.status != 202:
                self.fail(f"upload {location} PATCH: {response.status} {response.body!r}")
                continue
            digest = sha256(upload.data)
            location = str(response.header("Location"))
            separator = "&" if "?" in location else "?"
            response = request(
                "PUT", self.resolve(f"{location}{separator}digest={digest}"), timeout=self.timeout
            )
            if response.status != 201:
                self.fail(f"upload {location} PUT: {response.status} {response.body!r}")
                continue
            self.summary.continued += 1
            ledger.blobs_gone.discard(digest)
            ledger.blobs[digest] = len(upload.data)
            self._blob(ledger, digest, len(upload.data), must=True)
