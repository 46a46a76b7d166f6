"""
Garbage collection, txregistry against the reference (Distribution 2.8's
C{docker-registry garbage-collect}), on the same data, in one run, on one
machine.

For each size (repositories x blobs), the script writes a data folder in
Distribution's filesystem layout directly (no registry runs): OCI images
(manifest, config and layers, some layers shared by several repositories,
some repositories with an untagged manifest), and as many blobs again that
are linked into a repository (a C{_layers} link) but that no manifest
references: the garbage.  Every file is dated two hours back.

Then, for each repetition, it copies that folder twice and runs, on one copy,
C{docker-registry garbage-collect CONFIG} and, on the other, C{txregistry
garbage-collect --min-age 0s CONFIG}, each as a child process whose wall time
and peak RSS (C{ru_maxrss}, from C{os.wait4}) are measured.  It checks that
both left exactly the same blobs, namely every reachable one and none of the
garbage, and fails (exit status 1) otherwise; exit status 2 says that
txregistry's sources changed during the run (others edit the checkout), so
the figures mix versions.

It prints the medians, the ratio txregistry/reference and the cost per 1000
blobs at each size, and writes every figure to C{--json}.  Nothing goes over
the network.

Run: C{.venv/bin/python bench/gc_bench.py [--quick] [--large] [--repeat N]
[--json bench/results-gc.json]}.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from common import MIB, REGISTRIES, alternated, machine, source_version, tool_environment

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# Files are dated this far back: older than txregistry's default --min-age (1h).
AGE_SECONDS = 2 * 3600
# Own layers per image (the last image of a repository takes the leftovers).
LAYERS_PER_IMAGE = 2
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
TXREGISTRY = REPOSITORY_ROOT / ".venv" / "bin" / "txregistry"
PYTHON = REPOSITORY_ROOT / ".venv" / "bin" / "python"


@dataclass(frozen=True)
class Size:
    """One point of the benchmark: C{repositories} repositories, C{blobs} blobs in all."""

    repositories: int
    blobs: int

    @property
    def label(self) -> str:
        """How the table names it: C{repositories x blobs}."""
        return f"{self.repositories} x {self.blobs}"


DEFAULT_SIZES = (Size(1, 100), Size(20, 2_000), Size(200, 20_000))
LARGE_SIZE = Size(1_000, 100_000)


# -- the data folder ---------------------------------------------------------------


@dataclass
class Dataset:
    """
    A data folder in Distribution's layout, and what a collection must do to it.

    @ivar reachable: the hex digests a collection without C{-m} keeps: every
        manifest revision, its config and its layers.
    @ivar tagged_reachable: those a collection with C{-m} keeps: the manifests
        a tag points at now, their configs and layers.
    @ivar unreachable: the blobs linked into a repository that no manifest
        references: what both collectors must delete.
    """

    root: Path
    size: Size
    reachable: set[str] = field(default_factory=set)
    tagged_reachable: set[str] = field(default_factory=set)
    unreachable: set[str] = field(default_factory=set)
    manifests: int = 0
    untagged_manifests: int = 0
    shared_layers: int = 0
    layer_links: int = 0
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def describe(self) -> dict[str, Any]:
        """The figures of the data set, for the JSON file and the log."""
        return {
            "repositories": self.size.repositories,
            "blobs": len(self.reachable) + len(self.unreachable),
            "reachable": len(self.reachable),
            "reachable_with_m": len(self.tagged_reachable),
            "unreachable": len(self.unreachable),
            "manifests": self.manifests,
            "untagged_manifests": self.untagged_manifests,
            "shared_layers": self.shared_layers,
            "layer_links": self.layer_links,
            "files": self.files,
            "bytes": self.bytes,
            "generation_s": round(self.seconds, 3),
        }


class LayoutWriter:
    """Writes blobs and links under C{<root>/docker/registry/v2}, counting files and bytes."""

    def __init__(self, root: Path) -> None:
        self.v2 = os.path.join(root, "docker", "registry", "v2")
        self.files = 0
        self.bytes = 0

    def _write(self, folder: str, name: str, content: bytes) -> None:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name), "wb") as file:
            file.write(content)
        self.files += 1
        self.bytes += len(content)

    def blob(self, content: bytes) -> str:
        """Store C{content} as a blob (C{blobs/sha256/<hh>/<hex>/data}); its hex digest."""
        hex_digest = hashlib.sha256(content).hexdigest()
        folder = os.path.join(self.v2, "blobs", "sha256", hex_digest[:2], hex_digest)
        self._write(folder, "data", content)
        return hex_digest

    def link(self, repository: str, below: str, hex_digest: str) -> None:
        """
        Write a link file C{repositories/<repository>/<below>/link} holding
        C{sha256:<hex_digest>} (no newline, as Distribution writes them).
        """
        folder = os.path.join(self.v2, "repositories", repository, below)
        self._write(folder, "link", f"sha256:{hex_digest}".encode())

    def layer_link(self, repository: str, hex_digest: str) -> None:
        """Link blob C{hex_digest} into C{repository} (C{_layers/sha256/<hex>/link})."""
        self.link(repository, f"_layers/sha256/{hex_digest}", hex_digest)


def _descriptor(media_type: str, hex_digest: str, size: int) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": f"sha256:{hex_digest}", "size": size}


def _share(total: int, parts: int, index: int) -> int:
    """Part C{index} of C{total} split into C{parts} nearly equal parts."""
    return total // parts + (1 if index < total % parts else 0)


def repository_name(index: int) -> str:
    """The name of repository C{index}: two components, as on most registries."""
    return f"team{index % 10}/app{index:05d}"


def generate(root: Path, size: Size, seed: int) -> Dataset:
    """
    Write a data folder of C{size} under C{root}: half the blobs (rounded
    down) unreachable, the rest images.

    Reachable: a twentieth of them are base layers, each used by images of
    several repositories; every repository gets an equal share of the rest
    as images of a manifest, a config and L{LAYERS_PER_IMAGE} own layers
    (the last image takes the leftover blobs as extra layers) plus one base
    layer.  Every image has a tag C{v<n>}, the last also C{latest}; in every
    fourth repository with more than one image, the first image has no tag
    now (C{latest} pointed at it before: it stays in the tag's history).
    Unreachable: an equal share per repository of blobs linked into it, one
    in ten also linked into the next repository.  Contents: 1-4 KiB of
    random bytes for layers and garbage, JSON for configs and manifests.

    @raise ValueError: too few blobs for that many repositories.
    """
    began = time.perf_counter()
    rng = random.Random(seed)
    writer = LayoutWriter(root)
    dataset = Dataset(root, size)
    repositories = size.repositories
    unreachable_count = size.blobs // 2
    reachable_count = size.blobs - unreachable_count
    shared_count = max(1, reachable_count // 20)
    own_count = reachable_count - shared_count
    if own_count < 2 * repositories:
        raise ValueError(f"{size.label}: too few blobs for a manifest and a config per repository")

    def random_blob() -> tuple[str, int]:
        content = rng.randbytes(rng.randint(1024, 4096))
        return writer.blob(content), len(content)

    shared = [random_blob() for _ in range(shared_count)]
    dataset.shared_layers = shared_count
    dataset.reachable.update(hex_digest for hex_digest, _ in shared)
    image_number = 0
    for index in range(repositories):
        name = repository_name(index)
        own = _share(own_count, repositories, index)
        images = max(1, own // (2 + LAYERS_PER_IMAGE))
        layer_total = own - 2 * images
        one_untagged = index % 4 == 0 and images > 1
        latest_history: list[str] = []
        for image in range(images):
            layer_count = layer_total // images + (
                layer_total % images if image == images - 1 else 0
            )
            layers = [random_blob() for _ in range(layer_count)]
            layers.append(shared[image_number % shared_count])
            image_number += 1
            config = json.dumps(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "config": {"Labels": {"repository": name, "image": str(image)}},
                    "rootfs": {
                        "type": "layers",
                        "diff_ids": [f"sha256:{hex_digest}" for hex_digest, _ in layers],
                    },
                },
                indent=3,
            ).encode()
            config_digest = writer.blob(config)
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": _descriptor(OCI_CONFIG, config_digest, len(config)),
                    "layers": [_descriptor(OCI_LAYER, h, n) for h, n in layers],
                },
                indent=3,
            ).encode()
            manifest_digest = writer.blob(manifest)
            references = {manifest_digest, config_digest, *(h for h, _ in layers)}
            for hex_digest in sorted(references - {manifest_digest}):
                writer.layer_link(name, hex_digest)
            writer.link(name, f"_manifests/revisions/sha256/{manifest_digest}", manifest_digest)
            dataset.manifests += 1
            dataset.reachable |= references
            tags = [] if one_untagged and image == 0 else [f"v{image}"]
            if one_untagged and image == 0:
                dataset.untagged_manifests += 1
                latest_history.append(manifest_digest)
            else:
                dataset.tagged_reachable |= references
            if image == images - 1:
                tags.append("latest")
                latest_history.append(manifest_digest)
            for tag in tags:
                history = latest_history if tag == "latest" else [manifest_digest]
                for hex_digest in history:
                    writer.link(
                        name, f"_manifests/tags/{tag}/index/sha256/{hex_digest}", hex_digest
                    )
                writer.link(name, f"_manifests/tags/{tag}/current", manifest_digest)
        for number in range(_share(unreachable_count, repositories, index)):
            hex_digest, _ = random_blob()
            dataset.unreachable.add(hex_digest)
            writer.layer_link(name, hex_digest)
            if number % 10 == 0 and repositories > 1:
                writer.layer_link(repository_name((index + 1) % repositories), hex_digest)
    dataset.layer_links = _count_layer_links(root)
    backdate(root, time.time() - AGE_SECONDS)
    dataset.files = writer.files
    dataset.bytes = writer.bytes
    dataset.seconds = time.perf_counter() - began
    return dataset


def _count_layer_links(root: Path) -> int:
    """How many C{_layers/.../link} files are under C{root}."""
    return sum(
        1
        for folder, _, files in os.walk(root)
        if "link" in files
        and os.path.basename(os.path.dirname(os.path.dirname(folder))) == "_layers"
    )


def backdate(root: Path, when: float) -> None:
    """Set the access and modification times of every file and folder under C{root} to C{when}."""
    for folder, _, files in os.walk(root):
        for name in files:
            os.utime(os.path.join(folder, name), (when, when))
        os.utime(folder, (when, when))


def stored_blobs(root: Path) -> set[str]:
    """The hex digests of the blobs whose C{data} file is under C{root}'s blob store."""
    store = os.path.join(root, "docker", "registry", "v2", "blobs", "sha256")
    found: set[str] = set()
    for prefix in os.listdir(store) if os.path.isdir(store) else ():
        for hex_digest in os.listdir(os.path.join(store, prefix)):
            if os.path.isfile(os.path.join(store, prefix, hex_digest, "data")):
                found.add(hex_digest)
    return found


# -- running the collectors ------------------------------------------------------------


@dataclass
class Collection:
    """
    One collector's run on one copy.

    @ivar wall_s: from starting the process to reaping it.
    @ivar peak_rss_mib: the process's C{ru_maxrss} (MiB = 2^20 bytes).
    @ivar remaining: blobs left afterwards (not in the JSON file).
    """

    collector: str
    size: str
    repeat: int
    wall_s: float
    peak_rss_mib: float
    user_s: float
    system_s: float
    exit_status: int
    blobs_left: int
    layer_links_left: int
    last_line: str
    remaining: set[str] = field(default_factory=set, repr=False)

    @property
    def cpu_s(self) -> float:
        """User plus system CPU time of the process."""
        return self.user_s + self.system_s

    def record(self) -> dict[str, Any]:
        """The figures for the JSON file."""
        figures = asdict(self)
        del figures["remaining"]
        figures["cpu_s"] = self.cpu_s
        return figures


def write_config(path: Path, root: Path) -> None:
    """
    The collectors' config: filesystem storage under C{root}, deletes
    enabled.  Neither collector needs an C{http} section.
    """
    config = {
        "version": 0.1,
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
    }
    path.write_text(yaml.safe_dump(config))


@dataclass(frozen=True)
class Txregistry:
    """
    How txregistry's collector is run: the checkout's C{.venv/bin/txregistry},
    or, with C{source}, C{python -m txregistry} with that source tree first
    on C{PYTHONPATH} (e.g. a C{git archive} of another commit), and C{args}
    added to its command line.
    """

    args: tuple[str, ...] = ()
    source: Path | None = None

    def program(self) -> list[str]:
        """The command that runs C{txregistry}."""
        if self.source is None:
            return [str(TXREGISTRY)]
        return [str(PYTHON), "-m", "txregistry"]

    def environment(self) -> dict[str, str]:
        """The environment of the collectors: no proxies, no C{REGISTRY_} settings."""
        extra = {} if self.source is None else {"PYTHONPATH": str(self.source)}
        return tool_environment(extra)


def command(
    collector: str, config: Path, delete_untagged: bool, txregistry: Txregistry
) -> list[str]:
    """The command line that collects with C{collector} (C{txregistry} or C{reference})."""
    flags = ["-m"] if delete_untagged else []
    if collector == "reference":
        return ["docker-registry", "garbage-collect", *flags, str(config)]
    return [
        *txregistry.program(),
        "garbage-collect",
        "--min-age",
        "0s",
        *flags,
        *txregistry.args,
        str(config),
    ]


def collect(
    collector: str,
    copy: Path,
    workdir: Path,
    size: Size,
    repeat: int,
    delete_untagged: bool,
    txregistry: Txregistry,
) -> Collection:
    """
    Run C{collector} on the data folder C{copy}, its output into a log file
    in C{workdir}; measure it and list what it left.
    """
    config = workdir / f"{collector}.yml"
    write_config(config, copy)
    log = workdir / f"{collector}.log"
    arguments = command(collector, config, delete_untagged, txregistry)
    with open(log, "wb") as output:
        began = time.perf_counter()
        process = subprocess.Popen(
            arguments,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=txregistry.environment(),
            cwd=workdir,
        )
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:  # interrupted: leave no collector behind
            process.kill()
            process.wait()
            raise
        wall = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    lines = log.read_text(errors="replace").splitlines()
    if process.returncode != 0:
        tail = "\n".join(lines[-20:])
        raise SystemExit(
            f"{collector} failed ({process.returncode}): {shlex.join(arguments)}\n{tail}"
        )
    remaining = stored_blobs(copy)
    return Collection(
        collector=collector,
        size=size.label,
        repeat=repeat,
        wall_s=wall,
        peak_rss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
        user_s=usage.ru_utime,
        system_s=usage.ru_stime,
        exit_status=process.returncode,
        blobs_left=len(remaining),
        layer_links_left=_count_layer_links(copy),
        last_line=lines[-1] if lines else "",
        remaining=remaining,
    )


def check(dataset: Dataset, runs: Sequence[Collection], delete_untagged: bool) -> list[str]:
    """
    What is wrong with the collections C{runs} of C{dataset}: nothing when
    both left exactly the same blobs, namely every reachable one (with
    C{-m}, every one a tag reaches) and none of the garbage.
    """
    expected = dataset.tagged_reachable if delete_untagged else dataset.reachable
    problems: list[str] = []
    by_collector = {run.collector: run for run in runs}
    left = {name: run.remaining for name, run in by_collector.items()}
    if len(left) == 2 and left["txregistry"] != left["reference"]:
        only_tx = sorted(left["txregistry"] - left["reference"])
        only_ref = sorted(left["reference"] - left["txregistry"])
        problems.append(
            f"the collectors left different blobs: {len(only_tx)} only txregistry kept "
            f"(e.g. {only_tx[:3]}), {len(only_ref)} only the reference kept (e.g. {only_ref[:3]})"
        )
    for name, remaining in left.items():
        missing = expected - remaining
        if missing:
            problems.append(
                f"{name} deleted {len(missing)} reachable blobs (e.g. {sorted(missing)[:3]})"
            )
        kept = remaining - expected
        if kept:
            problems.append(f"{name} left {len(kept)} unreachable blobs (e.g. {sorted(kept)[:3]})")
    return problems


# -- results --------------------------------------------------------------------------------


def medians(runs: Sequence[Collection]) -> dict[str, dict[str, dict[str, float]]]:
    """Per size, per collector: the median of each figure over the repetitions."""
    result: dict[str, dict[str, dict[str, float]]] = {}
    for run in runs:
        result.setdefault(run.size, {}).setdefault(run.collector, {})
    for size, collectors in result.items():
        for collector in collectors:
            mine = [run for run in runs if run.size == size and run.collector == collector]
            collectors[collector] = {
                "wall_s": statistics.median(run.wall_s for run in mine),
                "peak_rss_mib": statistics.median(run.peak_rss_mib for run in mine),
                "cpu_s": statistics.median(run.cpu_s for run in mine),
                "blobs_left": statistics.median(run.blobs_left for run in mine),
                "layer_links_left": statistics.median(run.layer_links_left for run in mine),
            }
    return result


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}" if denominator else "-"


def table(
    sizes: Sequence[Size], summary: dict[str, dict[str, dict[str, float]]], repeat: int
) -> str:
    """The medians, the ratios, and how the cost grows with the number of blobs."""
    lines = [
        f"median of {repeat} run(s); size = repositories x blobs (half unreachable); "
        "wall = the collector process's wall time; RSS = its ru_maxrss, MiB = 2^20 bytes; "
        "CPU = user + system; ratio = txregistry/reference",
        f"{'size':>14}  {'ref wall s':>10}  {'tx wall s':>9}  {'ratio':>6}  "
        f"{'ref RSS MiB':>11}  {'tx RSS MiB':>10}  {'ratio':>6}  "
        f"{'ref CPU s':>9}  {'tx CPU s':>8}  {'ratio':>6}",
    ]
    for size in sizes:
        reference = summary[size.label]["reference"]
        txregistry = summary[size.label]["txregistry"]
        lines.append(
            f"{size.label:>14}  {reference['wall_s']:>10.2f}  {txregistry['wall_s']:>9.2f}  "
            f"{_ratio(txregistry['wall_s'], reference['wall_s']):>6}  "
            f"{reference['peak_rss_mib']:>11.1f}  {txregistry['peak_rss_mib']:>10.1f}  "
            f"{_ratio(txregistry['peak_rss_mib'], reference['peak_rss_mib']):>6}  "
            f"{reference['cpu_s']:>9.2f}  {txregistry['cpu_s']:>8.2f}  "
            f"{_ratio(txregistry['cpu_s'], reference['cpu_s']):>6}"
        )
    lines.append("")
    lines.append("wall seconds per 1000 blobs (whole run / marginal from the size before):")
    for collector in ("reference", "txregistry"):
        parts = []
        previous: Size | None = None
        for size in sizes:
            wall = summary[size.label][collector]["wall_s"]
            part = f"{size.label}: {wall / size.blobs * 1000:.3f}"
            if previous is not None and size.blobs > previous.blobs:
                before = summary[previous.label][collector]["wall_s"]
                part += f" / {(wall - before) / (size.blobs - previous.blobs) * 1000:.3f}"
            parts.append(part)
            previous = size
        lines.append(f"  {collector:>10}  " + "; ".join(parts))
    return "\n".join(lines)


def source_fingerprint(root: Path) -> str:
    """
    A digest of txregistry's sources under C{root} (C{txregistry/} and
    C{twisted/plugins/}): any edit changes it.  Others may edit the
    checkout while the benchmark runs; a run whose sources changed
    measured several versions.
    """
    hasher = hashlib.sha256()
    for folder in ("txregistry", "twisted/plugins"):
        for path in sorted((root / folder).rglob("*.py")):
            hasher.update(f"{path.relative_to(root)}\0".encode())
            hasher.update(path.read_bytes() + b"\0")
    return hasher.hexdigest()[:12]


def changed_sources() -> list[str]:
    """The files under C{txregistry/} and C{twisted/} that differ from the commit (git status)."""
    result = subprocess.run(
        ["git", "-C", str(REPOSITORY_ROOT), "status", "--porcelain", "--", "txregistry", "twisted"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return result.stdout.splitlines()


def export_commit(revision: str, folder: Path) -> str:
    """
    Write C{txregistry/} and C{twisted/} as they are at commit C{revision}
    into C{folder} (C{git archive}: the checkout is not touched); the
    commit's short hash.

    @raise ValueError: C{revision} names no commit.
    """
    root = str(REPOSITORY_ROOT)
    found = subprocess.run(
        ["git", "-C", root, "rev-parse", "--short", "--verify", f"{revision}^{{commit}}"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if found.returncode != 0:
        raise ValueError(f"{revision!r} names no commit")
    short = found.stdout.strip()
    archive = subprocess.run(
        ["git", "-C", root, "archive", "--format=tar", short, "txregistry", "twisted"],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return short


def reference_version() -> str:
    """What C{docker-registry --version} says."""
    try:
        result = subprocess.run(
            ["docker-registry", "--version"], capture_output=True, text=True, timeout=10
        )
    except OSError:
        return "unknown"
    return result.stdout.strip() or "unknown"


def parse_size(text: str) -> Size:
    """C{REPOSITORIESxBLOBS} (e.g. C{20x2000}) as a L{Size}."""
    repositories, separator, blobs = text.lower().partition("x")
    try:
        size = Size(int(repositories), int(blobs.replace("_", "")))
    except ValueError:
        size = None
    if not separator or size is None or size.repositories < 1 or size.blobs < 4:
        raise argparse.ArgumentTypeError(f"{text!r} is not REPOSITORIESxBLOBS")
    return size


def _stop(signal_number: int, _frame: object) -> None:
    """On C{SIGTERM} (e.g. from C{timeout}): unwind, so that the scratch folder is deleted."""
    raise SystemExit(128 + signal_number)


def main(argv: list[str] | None = None) -> int:
    """
    Generate, collect, check, report: 0 when both collectors did the same
    right thing, 1 when not, 2 when txregistry's sources changed meanwhile.
    """
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="the two smallest sizes, 1 run (under a minute)"
    )
    parser.add_argument(
        "--large", action="store_true", help=f"add {LARGE_SIZE.label} to the default sizes"
    )
    parser.add_argument(
        "--size",
        dest="sizes",
        type=parse_size,
        action="append",
        metavar="RxB",
        help="measure R repositories with B blobs instead of the default sizes (repeatable)",
    )
    parser.add_argument("--repeat", type=int, default=None, help="runs per size (default 3)")
    parser.add_argument(
        "-m",
        "--delete-untagged",
        action="store_true",
        help="pass -m to both collectors (untagged manifests and what only they reference go)",
    )
    parser.add_argument(
        "--txregistry-args",
        default="",
        metavar="ARGS",
        help="extra arguments for 'txregistry garbage-collect' (shell-split), e.g. '--parallel 4'",
    )
    parser.add_argument(
        "--txregistry-source",
        type=Path,
        metavar="DIR",
        help="run 'python -m txregistry' from this source tree (e.g. a git archive of a commit) "
        "instead of the checkout's .venv/bin/txregistry",
    )
    parser.add_argument(
        "--commit",
        metavar="REV",
        help="measure txregistry as committed at REV (e.g. HEAD), not the checkout's files, "
        "which others may be editing: its sources are exported with git archive and run as "
        "with --txregistry-source",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=REPOSITORY_ROOT / "bench" / "results-gc.json",
        help="write every figure to this file",
    )
    parser.add_argument("--no-json", action="store_true", help="write no JSON file")
    parser.add_argument(
        "--scratch", type=Path, default=None, help="where data folders go (default: /tmp)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated data")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)

    if args.sizes:
        sizes = sorted(set(args.sizes), key=lambda size: (size.blobs, size.repositories))
    elif args.quick:
        sizes = list(DEFAULT_SIZES[:2])
    else:
        sizes = [*DEFAULT_SIZES, *([LARGE_SIZE] if args.large else [])]
    repeat = args.repeat or (1 if args.quick else 3)
    if shutil.which("docker-registry") is None:
        parser.error("docker-registry is not installed (apt-get install docker-registry)")
    if not TXREGISTRY.exists():
        parser.error(f"{TXREGISTRY} is missing: set up the virtualenv (scripts/venv.sh)")
    if args.commit and args.txregistry_source:
        parser.error("--commit and --txregistry-source exclude each other")
    source = args.txregistry_source.resolve() if args.txregistry_source else None
    if source is not None and not (source / "txregistry" / "__main__.py").exists():
        parser.error(f"{source} holds no txregistry package")
    collectors = list(REGISTRIES)

    if args.scratch is not None:
        args.scratch.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="gc-bench-", dir=args.scratch))
    version = source_version() if source is None else f"source tree {source}"
    if args.commit:
        source = scratch / "txregistry-source"
        try:
            version = export_commit(args.commit, source)
        except (ValueError, OSError, subprocess.SubprocessError, tarfile.TarError) as error:
            shutil.rmtree(scratch, ignore_errors=True)
            parser.error(f"--commit {args.commit}: {error}")
    txregistry = Txregistry(tuple(shlex.split(args.txregistry_args)), source)
    source_root = source or REPOSITORY_ROOT
    fingerprint = source_fingerprint(source_root)
    changes = changed_sources() if source is None else []
    reference = reference_version()
    load_before = os.getloadavg()
    print(
        f"txregistry at {version} (sources {fingerprint}"
        + (f"; changed: {', '.join(line[3:] for line in changes)}" if changes else "")
        + f"); reference: {reference}",
        flush=True,
    )
    began = time.perf_counter()
    runs: list[Collection] = []
    datasets: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    try:
        for size in sizes:
            original = scratch / "original"
            dataset = generate(original / "data", size, args.seed)
            datasets[size.label] = dataset.describe()
            print(
                f"{size.label}: generated in {dataset.seconds:.1f} s: "
                f"{len(dataset.reachable)} reachable blobs ({dataset.manifests} manifests, "
                f"{dataset.untagged_manifests} untagged; {dataset.shared_layers} shared layers), "
                f"{len(dataset.unreachable)} unreachable; {dataset.files} files, "
                f"{dataset.bytes / MIB:.1f} MiB",
                flush=True,
            )
            for index in range(repeat):
                order = alternated(collectors, index)
                copies: dict[str, Path] = {}
                for collector in order:
                    workdir = scratch / collector
                    copies[collector] = workdir / "data"
                    shutil.copytree(dataset.root, copies[collector], symlinks=True)
                done: list[Collection] = []
                for collector in order:
                    # Neither collector shares the disk with the writing back
                    # of the copies, nor of the other's deletes.
                    os.sync()
                    run = collect(
                        collector,
                        copies[collector],
                        scratch / collector,
                        size,
                        index,
                        args.delete_untagged,
                        txregistry,
                    )
                    done.append(run)
                    print(
                        f"  run {index + 1}/{repeat}: {collector:>10}: {run.wall_s:.2f} s, "
                        f"{run.peak_rss_mib:.1f} MiB, CPU {run.cpu_s:.2f} s, "
                        f"{run.blobs_left} blobs left",
                        flush=True,
                    )
                found = check(dataset, done, args.delete_untagged)
                problems += [f"{size.label}, run {index + 1}: {problem}" for problem in found]
                runs += done
                for collector in order:
                    shutil.rmtree(scratch / collector)
            shutil.rmtree(original)
        # Others edit this checkout: a run that saw two versions measured neither.
        mixed = source_fingerprint(source_root) != fingerprint
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary = medians(runs)
    print()
    print(table(sizes, summary, repeat))
    print(
        f"\nsame blobs left by both, every reachable blob kept, all garbage deleted: "
        f"{'no' if problems else 'yes'}; {os.cpu_count()} CPUs; "
        f"total time {time.perf_counter() - began:.0f} s"
    )
    load_after = os.getloadavg()
    print(
        "load average (1, 5, 15 min) before: "
        + ", ".join(f"{value:.2f}" for value in load_before)
        + "; after: "
        + ", ".join(f"{value:.2f}" for value in load_after)
        + (
            f" (above {os.cpu_count()} CPUs: something else competed for them)"
            if max(*load_before, *load_after) > (os.cpu_count() or 1)
            else ""
        )
    )
    if mixed:
        print(
            "\nWARNING: txregistry's sources changed during the run: the figures mix "
            "versions; run again",
            file=sys.stderr,
        )
    if not args.no_json:
        document: dict[str, Any] = {
            "txregistry_version": version,
            "txregistry_sources": fingerprint,
            "txregistry_changed_files": changes,
            "reference_version": reference,
            "sizes": [asdict(size) for size in sizes],
            "repeat": repeat,
            "delete_untagged": args.delete_untagged,
            "txregistry_args": list(txregistry.args),
            "seed": args.seed,
            "datasets": datasets,
            "median": summary,
            "runs": [run.record() for run in runs],
            "checks": {"passed": not problems, "problems": problems},
            "sources_changed_during_run": mixed,
            "machine": machine(),
            "load_average": {"before": load_before, "after": load_after},
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    if problems:
        print("\nFAILED:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 2 if mixed else 0


if __name__ == "__main__":
    sys.exit(main())
