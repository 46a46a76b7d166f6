"""
Garbage collection while pushes go on: skopeo pushes images in a loop, each
reusing a layer that the previous round left unreferenced (so the collector
may be deleting it just as the push finds it there and skips it), while
C{txregistry garbage-collect --delete-untagged --min-age 1s} runs again and
again beside the registry.  A push may fail (it is told its blob is gone);
every push that got its 201s pulls back whole at the end.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from clients import Clients, CommandFailed, Image, OCILayout, Target, random_bytes, same_image

ROUNDS = 12
BASE = {"bin/base": random_bytes("concurrent base", 40_000)}


def recycled(round_number: int) -> dict[str, bytes]:
    """A layer pushed in an image that is deleted, then reused by the next round's image."""
    return {"recycled": random_bytes(f"recycled {round_number}", 30_000)}


def collect_repeatedly(config: Path, stop: threading.Event, outputs: list[str]) -> None:
    while not stop.is_set():
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "txregistry",
                "garbage-collect",
                "--delete-untagged",
                "--min-age",
                "1s",
                str(config),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        outputs.append(f"exit {result.returncode}\n{result.stdout}{result.stderr}")


def test_pushes_during_collections(clients: Clients, tmp_path: Path) -> None:
    target = Target("txregistry", tmp_path / "root", tmp_path / "work").start()
    try:
        clients.allow(target)
        layout = OCILayout.create(tmp_path / "layout")
        config = target.process.workdir / f"{target.process.name}-config.yml"
        stop = threading.Event()
        outputs: list[str] = []
        collector = threading.Thread(target=collect_repeatedly, args=(config, stop, outputs))
        collector.start()
        pushed: dict[str, Image] = {}
        failed: list[str] = []
        try:
            for number in range(ROUNDS):
                image = layout.add_image(
                    [
                        BASE,
                        {"unique": random_bytes(f"unique {number}", 20_000)},
                        recycled(number - 1),
                    ]
                )
                layout.tag(f"keep{number}", image.manifest)
                try:
                    clients.push(target, layout, f"keep{number}", f"loop/app:v{number}")
                except CommandFailed as error:
                    failed.append(error.result.stderr[-500:])
                else:
                    pushed[f"v{number}"] = image
                # The next round's reused layer, left unreferenced in loop/app.
                doomed = layout.add_image([recycled(number)])
                layout.tag(f"doomed{number}", doomed.manifest)
                try:
                    clients.push(target, layout, f"doomed{number}", f"loop/app:doomed{number}")
                except CommandFailed:
                    continue
                target.request("DELETE", f"loop/app/manifests/{doomed.digest}")
                time.sleep(1.2)  # past the minimum age: the collector may take it
        finally:
            stop.set()
            collector.join(timeout=180)
        assert not collector.is_alive()
        assert all(output.startswith("exit 0") for output in outputs), outputs
        collections = [o for o in outputs if "blobs and" in o]
        assert len(collections) >= 3, outputs
        assert any(" 0 blobs and" not in o.splitlines()[-1] for o in collections), outputs
        assert len(pushed) >= ROUNDS // 2, failed
        for tag, image in pushed.items():
            same_image(clients.pull(target, f"loop/app:{tag}", tmp_path / "pulled", tag), image)
        assert target.log_problems() == []
    finally:
        target.stop()
