"""
The distribution as a user gets it: the wheel built from the checkout's
files (what a fresh clone holds) contains C{txregistry/} and the plugin module
C{twisted/plugins/registry_plugin.py} and nothing else, and installed into a
fresh virtualenv it serves, and Twisted's plugin scan there still finds a
third-party driver installed beside it.

The fresh virtualenv borrows this one's dependencies (Twisted and the rest)
through a C{.pth} line naming our site-packages, so that nothing is fetched;
that line is not a site folder, so our own editable install of the checkout
is not seen there.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from support import temporary_directory
from test_plugin_example import EXAMPLE, push_and_pull_blob, sqlite_config
from txregistry.testing.process import RegistryProcess

ROOT = Path(__file__).resolve().parent.parent


def checkout_files(root: Path) -> list[str]:
    """The files a fresh clone of C{root} would hold, with the uncommitted ones."""
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (root / name).exists()]


def copy_checkout(root: Path, destination: Path) -> Path:
    """Copy the files of L{checkout_files} to C{destination}."""
    for name in checkout_files(root):
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    return destination


def build_wheel(source: Path, output: Path) -> Path:
    """Build the wheel of the project at C{source} into C{output}, offline."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(output),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = output.glob("*.whl")
    return wheel


class WheelTests(SynchronousTestCase):
    """The wheel built from a fresh clone, and a virtualenv it is installed in."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.workdir = Path(temporary_directory_for_class(cls))
        clone = copy_checkout(ROOT, cls.workdir / "txregistry")
        cls.wheel = build_wheel(clone, cls.workdir / "wheels")

    def test_file_list(self) -> None:
        """
        The wheel holds the package (its resources included) and the plugin
        module, and no C{tests/}, C{bench/}, C{scripts/} or C{__init__.py}
        in C{twisted/} (which would shadow Twisted itself).
        """
        with zipfile.ZipFile(self.wheel) as wheel:
            names = wheel.namelist()
        top_levels = {name.split("/")[0] for name in names}
        self.assertEqual(
            {top for top in top_levels if not top.endswith(".dist-info")},
            {"txregistry", "twisted"},
        )
        twisted_files = sorted(name for name in names if name.startswith("twisted/"))
        self.assertEqual(twisted_files, ["twisted/plugins/registry_plugin.py"])
        for expected in [
            "txregistry/__init__.py",
            "txregistry/py.typed",
            "txregistry/interfaces.py",
            "txregistry/service.py",
            "txregistry/resources/app.py",
            "txregistry/drivers/filesystem.py",
            "txregistry/config/__init__.py",
            "txregistry/testing/drivers.py",
        ]:
            self.assertIn(expected, names)
        self.assertFalse([name for name in names if name.startswith(("tests/", "bench/"))])
        self.assertFalse([name for name in names if "__pycache__" in name])

    def test_installed(self) -> None:
        """
        Installed into a fresh virtualenv with the example third-party
        driver, C{twist registry} serves from the installed copy, and stores
        blobs with that driver.
        """
        venv = Path(temporary_directory(self)) / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = venv / "bin" / "python"
        site_packages = Path(
            subprocess.run(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        (site_packages / "borrowed-dependencies.pth").write_text(
            sysconfig.get_path("purelib") + "\n"
        )
        example = build_wheel(
            shutil.copytree(EXAMPLE, self.workdir / "example", dirs_exist_ok=True),
            self.workdir / "example-wheels",
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(python),
                "install",
                "--quiet",
                "--no-deps",
                "--no-index",
                str(self.wheel),
                str(example),
            ],
            check=True,
            capture_output=True,
        )
        found = subprocess.run(
            [
                str(python),
                "-c",
                "import txregistry\n"
                "from txregistry.drivers.plugins import driver_factories\n"
                "print(txregistry.__file__)\n"
                "print(' '.join(sorted(driver_factories())))\n",
            ],
            cwd=venv,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        self.assertTrue(Path(found[0]).is_relative_to(site_packages), found)
        self.assertEqual(found[1].split(), ["filesystem", "inmemory", "s3", "s3aws", "sqlite"])
        self.assertFalse((site_packages / "twisted" / "__init__.py").exists())

        workdir = Path(temporary_directory(self))
        registry = InstalledRegistry(python, workdir, sqlite_config(workdir))
        with registry:
            push_and_pull_blob(self, registry, workdir)
        self.assertNotIn("Traceback", registry.output())


def temporary_directory_for_class(case: type[SynchronousTestCase]) -> str:
    """A folder for a whole test class, removed after its last test."""
    directory = tempfile.mkdtemp(prefix="txregistry-test-")
    case.addClassCleanup(shutil.rmtree, directory, ignore_errors=True)
    return directory


class InstalledRegistry(RegistryProcess):
    """A registry process run by C{twist registry} of another virtualenv."""

    def __init__(self, python: Path, workdir: Path, config: dict[str, object]) -> None:
        super().__init__(workdir, config)
        self.python = python

    def command(self, config_path: Path | None) -> list[str]:
        """C{python -m twisted registry}, as the virtualenv's C{twist} runs it."""
        return [str(self.python), "-m", "twisted", "registry", "--config", str(config_path)]
