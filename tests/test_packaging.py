"""Checks on the PyInstaller bundle in dist/gan-workbench/.

They run only with GAN_WORKBENCH_PACKAGE_TEST=1, as `make package-test` sets,
because building the bundle takes minutes and gigabytes. The bundle is built
first if it is missing; GAN_WORKBENCH_BUNDLE points them at another folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import workbench
from workbench.app.resources import APP_ID, ICON_SIZES, icon_name

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = Path(os.environ.get("GAN_WORKBENCH_BUNDLE", ROOT / "dist" / "gan-workbench"))

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("GAN_WORKBENCH_PACKAGE_TEST") != "1",
        reason="bundle tests run only with GAN_WORKBENCH_PACKAGE_TEST=1 (make package-test)",
    ),
    pytest.mark.skipif(sys.platform != "linux", reason="packaging/build.sh and these file names are for Linux"),
    # a bundle with CUDA torch takes about 5 minutes to build on 2 cores
    pytest.mark.timeout(1800),
]


@pytest.fixture(scope="module")
def internal() -> Path:
    """Return the bundle's _internal folder, building the bundle if it is missing."""
    if not (BUNDLE / "gan-workbench").is_file():
        subprocess.run(["bash", str(ROOT / "packaging" / "build.sh")], check=True, timeout=1800)
    return BUNDLE / "_internal"


def test_bundle_version(internal):
    result = subprocess.run(
        [str(BUNDLE / "gan-workbench"), "--version"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"gan-workbench {workbench.__version__}"), result.stdout


def test_bundle_window_smoke(internal):
    result = subprocess.run(
        ["bash", str(ROOT / "packaging" / "test_bundle.sh"), str(BUNDLE)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS: window opened and quit with status 0" in result.stdout


def test_bundle_resources(internal):
    for name in [icon_name(None), *(icon_name(size) for size in ICON_SIZES)]:
        bundled = internal / "resources" / name
        assert bundled.is_file(), f"{name} missing from the bundle"
        assert bundled.read_bytes() == (ROOT / "resources" / name).read_bytes(), f"{name} differs"
    assert (internal / "resources" / f"{APP_ID}.desktop").is_file()
    assert (internal / "resources" / f"{APP_ID}.metainfo.xml").is_file()


@pytest.mark.parametrize(
    "plugin",
    [
        "platforms/libqxcb.so",
        "platforms/libqwayland.so",
        "platforms/libqoffscreen.so",
        "imageformats/libqsvg.so",
        "imageformats/libqjpeg.so",
        "iconengines/libqsvgicon.so",
    ],
)
def test_bundle_qt_plugin(internal, plugin):
    assert (internal / "PySide6" / "Qt" / "plugins" / plugin).is_file()


@pytest.fixture(scope="module")
def archived_modules(internal) -> set[str]:
    """Return the names of the modules in the bundle's embedded PYZ archive."""
    readers = pytest.importorskip("PyInstaller.archive.readers")
    package = readers.CArchiveReader(str(BUNDLE / "gan-workbench"))
    return set(package.open_embedded_archive("PYZ.pyz").toc)


def test_bundle_has_workbench(archived_modules):
    # modules imported inside functions, which only the spec's hidden imports bring in
    assert "workbench.cli" in archived_modules
    assert "workbench.app.about" in archived_modules
    assert "workbench.core.trainer" in archived_modules


@pytest.mark.parametrize("module", ["triton", "pytest", "_pytest", "hypothesis", "pytorch_fid", "tests"])
def test_bundle_excludes(internal, archived_modules, module):
    assert not (internal / module).exists()
    collected = sorted(name for name in archived_modules if name.split(".")[0] == module)
    assert collected == [], f"{module} modules were collected"
