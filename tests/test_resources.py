"""Resources, desktop integration files and the About dialog."""

from __future__ import annotations

import configparser
import importlib.util
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import torch
from PIL import Image
from PySide6.QtCore import QSize
from PySide6.QtGui import QGuiApplication, QImage

import workbench
from workbench.app import about, resources
from workbench.app.about import AboutDialog, version_line, version_report
from workbench.app.resources import APP_ID, ICON_SIZES, app_icon, icon_name, resource_path

ROOT = Path(__file__).resolve().parents[1]
DESKTOP_FILE = ROOT / "resources" / f"{APP_ID}.desktop"
METAINFO_FILE = ROOT / "resources" / f"{APP_ID}.metainfo.xml"


def _load_render_icons():
    spec = importlib.util.spec_from_file_location("render_icons", ROOT / "packaging" / "render_icons.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_validator(command: list[str]) -> subprocess.CompletedProcess:
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} not installed (Debian: apt-get install desktop-file-utils appstream)")
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


# --- desktop entry and AppStream metainfo ---


def test_desktop_file_validates():
    result = _run_validator(["desktop-file-validate", str(DESKTOP_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stdout.lower(), result.stdout


def test_metainfo_validates():
    result = _run_validator(["appstreamcli", "validate", "--no-net", "--explain", str(METAINFO_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_desktop_file_keys():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # keys are case-sensitive
    entry.read(DESKTOP_FILE, encoding="utf-8")
    section = entry["Desktop Entry"]
    assert section["Type"] == "Application"
    assert section["Exec"] == "gan-workbench"
    assert section["Icon"] == APP_ID
    assert "Science" in section["Categories"].split(";")


def test_metainfo_matches_app():
    component = ElementTree.parse(METAINFO_FILE).getroot()
    assert component.findtext("id") == APP_ID
    assert component.find("launchable").text == f"{APP_ID}.desktop"
    assert component.findtext("project_license") == "MIT"
    assert component.findtext("metadata_license") == "CC0-1.0"
    newest_release = component.find("releases/release")
    assert newest_release.get("version") == workbench.__version__


# --- icons ---


@pytest.mark.parametrize("size", ICON_SIZES)
def test_png_icon_size(size):
    with Image.open(resource_path(icon_name(size))) as image:
        assert image.format == "PNG"
        assert image.size == (size, size)
        assert image.mode == "RGBA"


def test_png_icons_match_svg(qapp):
    render_icons = _load_render_icons()
    assert render_icons.main(["--check"]) == 0


def test_icon_check_rejects_stale_png(qapp):
    render_icons = _load_render_icons()
    path = resource_path(icon_name(16))
    blank = QImage(16, 16, QImage.Format.Format_ARGB32)
    blank.fill(0)
    assert "differs from the SVG" in render_icons.check_png(path, blank)
    larger = QImage(24, 24, QImage.Format.Format_ARGB32)
    assert "is 16x16, expected 24x24" in render_icons.check_png(path, larger)


def test_app_icon_sizes(qapp):
    icon = app_icon()
    assert not icon.isNull()
    assert set(icon.availableSizes()) == {QSize(size, size) for size in ICON_SIZES}


def test_icon_name_rejects_size():
    with pytest.raises(ValueError, match="no icon is rendered at 20 px"):
        icon_name(20)


# --- resource lookup ---


def test_resource_path_checkout():
    path = resource_path(icon_name(None))
    assert path == ROOT / "resources" / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"


@pytest.mark.parametrize("name", ["../pyproject.toml", "/etc/passwd", "icons/../../pyproject.toml", ""])
def test_resource_path_rejects_escape(name):
    with pytest.raises(ValueError, match="relative path inside the resources folder"):
        resource_path(name)


def test_resource_path_missing():
    with pytest.raises(FileNotFoundError, match="'no-such-file.png' not found in any of: .*resources"):
        resource_path("no-such-file.png")


def test_resource_path_bundle_first(tmp_path, monkeypatch):
    bundled = tmp_path / "resources" / f"{APP_ID}.desktop"
    bundled.parent.mkdir()
    bundled.write_text("[Desktop Entry]\n")
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert resources.resource_dirs()[0] == tmp_path / "resources"
    assert resource_path(f"{APP_ID}.desktop") == bundled
    # files the bundle lacks still come from the checkout
    assert resource_path(icon_name(16)).is_relative_to(ROOT / "resources")


def test_configure_application(qapp):
    previous = (qapp.desktopFileName(), qapp.applicationVersion(), qapp.windowIcon())
    try:
        resources.configure_application(qapp)
        assert qapp.desktopFileName() == APP_ID
        assert qapp.applicationVersion() == workbench.__version__
        assert not qapp.windowIcon().isNull()
    finally:
        qapp.setDesktopFileName(previous[0])
        qapp.setApplicationVersion(previous[1])
        qapp.setWindowIcon(previous[2])


# --- version report and About dialog ---


def _report_fields(report: str) -> dict[str, str]:
    fields = {}
    for line in report.splitlines():
        label, _, value = line.partition(":")
        fields[label] = value.strip()
    return fields


def test_version_line_format():
    import PySide6

    line = version_line()
    torch_release = torch.__version__.split("+")[0]
    assert line == f"gan-workbench {workbench.__version__} (torch {torch_release}, PySide6 {PySide6.__version__})"


def test_version_report_fields():
    fields = _report_fields(version_report())
    assert fields["GAN Workbench"] == workbench.__version__
    assert fields["PyTorch"] == torch.__version__
    if torch.version.cuda is None:
        assert fields["CUDA"] == "not available (CPU-only torch build)"
    else:
        assert fields["CUDA"] == f"{torch.version.cuda} (built into torch)"
    assert fields["Python"].startswith(".".join(map(str, sys.version_info[:3])))


def test_describe_device_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Test GPU")
    assert about.describe_device() == "CUDA: Test GPU (and 1 more)"


def test_describe_device_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert about.describe_device() == "CPU (4 threads)"


def test_about_dialog_contents(qtbot):
    dialog = AboutDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    assert f"Version {workbench.__version__}" in dialog.title_label.text()
    displayed_fields = _report_fields(dialog.report_view.toPlainText())
    assert displayed_fields["PyTorch"] == torch.__version__
    assert displayed_fields["GAN Workbench"] == workbench.__version__
    assert not dialog.windowIcon().isNull()
    dialog.close()


def test_about_dialog_copy(qtbot):
    dialog = AboutDialog()
    qtbot.addWidget(dialog)
    QGuiApplication.clipboard().setText("")
    dialog.copy_button.click()
    assert QGuiApplication.clipboard().text() == dialog.report_text
    dialog.close()
