"""The ``fid`` command: arguments, output lines and exit status."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
import torch
from PIL import Image

from workbench.core import fid_cli
from workbench.core.fid import load_stats
from workbench.core.fid import weights as fid_weights


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gan-workbench fid")
    fid_cli.add_fid_arguments(parser)
    return fid_cli.run_fid(parser.parse_args(argv))


def _value(output: str) -> float:
    return float(re.search(r"FID (\S+) ", output).group(1))


@pytest.fixture
def image_folder(tmp_path):
    """A folder of 30 small PNG images in two class subfolders."""
    rng = np.random.default_rng(0)
    for index in range(30):
        folder = tmp_path / "images" / ("a" if index % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    return tmp_path / "images"


def test_cli_points(tmp_path, capsys):
    status = _run(["--real", "ring8", "--fake", "ring8", "--n", "500", "--cache-dir", str(tmp_path)])
    output = capsys.readouterr()
    assert status == 0
    assert "extractor points" in output.out
    assert "N real 500, N fake 500" in output.out
    assert "precision" in output.out
    assert "recall" in output.out
    assert 0 <= _value(output.out) < 0.1
    assert output.err == ""


def test_cli_save_then_load_stats(tmp_path, capsys):
    stats_file = tmp_path / "ring8.npz"
    base = ["--fake", "grid25", "--n", "400", "--cache-dir", str(tmp_path)]
    assert _run(["--real", "ring8", "--save-stats", str(stats_file)] + base) == 0
    first = capsys.readouterr().out
    assert f"saved to {stats_file}" in first
    assert load_stats(stats_file).n == 400

    assert _run(["--real-stats", str(stats_file)] + base) == 0
    second = capsys.readouterr()
    assert _value(second.out) == pytest.approx(_value(first), rel=1e-6)
    assert "statistics file" in second.err


@pytest.mark.parametrize("argv, field", [
    (["--real", "ring8", "--fake", "ring8", "--n", "1"], "n:"),
    (["--real", "ring8", "--fake", "ring8", "--batch-size", "0"], "batch_size:"),
    (["--real", "nosuchkind", "--fake", "ring8"], "real:"),
    (["--real", "ring8", "--fake", "ring8", "--device", "tpu"], "device:"),
    (["--real", "ring8", "--fake", "ring8", "--extractor", "inception"], "extractor:"),
    (["--fake", "ring8"], "real:"),
    (["--real-stats", "missing.npz", "--fake", "ring8"], "not found"),
])
def test_cli_bad_input_one_line(argv, field, capsys):
    assert _run(argv) == fid_cli.EXIT_ERROR
    output = capsys.readouterr()
    assert output.out == ""
    assert output.err.count("\n") == 1
    assert output.err.startswith("gan-workbench fid: error: ")
    assert field in output.err


def test_cli_missing_weights(image_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(fid_weights.WEIGHTS_ENV_VAR, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    status = _run(["--real", f"folder:{image_folder}", "--fake", f"folder:{image_folder}",
                   "--n", "10", "--extractor", "inception"])
    error = capsys.readouterr().err
    assert status == fid_cli.EXIT_ERROR
    assert error.count("\n") == 1
    assert "Inception weights not found" in error
    assert "--extractor domain" in error


def test_cli_domain_folder(image_folder, tmp_path, capsys):
    status = _run(["--real", f"folder:{image_folder}", "--fake", f"folder:{image_folder}",
                   "--n", "30", "--extractor", "domain", "--cache-dir", str(tmp_path / "cache")])
    output = capsys.readouterr()
    assert status == 0
    assert "extractor domain-" in output.out
    assert _value(output.out) == 0.0
    assert "N below the feature dimension" in output.err


def test_cli_run_folder_default_real(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"")
    generator = torch.nn.Linear(2, 2)
    generator.z_dim = 2
    config = argparse.Namespace(data="ring8", image_size=0, channels=0, z_dim=0)
    monkeypatch.setattr("workbench.core.checkpoint.load_generator",
                        lambda run_dir, device="cpu": (generator.eval(), config))
    status = _run(["--fake", str(run), "--n", "300", "--cache-dir", str(tmp_path)])
    output = capsys.readouterr()
    assert status == 0
    assert "extractor points" in output.out


def test_cli_folder_without_checkpoint(tmp_path, capsys):
    assert _run(["--real", "ring8", "--fake", str(tmp_path)]) == fid_cli.EXIT_ERROR
    assert "has no checkpoint.pt" in capsys.readouterr().err


def test_cli_progress_line_erased():
    class Terminal:
        def __init__(self):
            self.text = ""

        def isatty(self):
            return True

        def write(self, text):
            self.text += text

        def flush(self):
            pass

    terminal = Terminal()
    line = fid_cli._ProgressLine(terminal)
    line(5, 10)
    line(10, 10)
    assert "FID: 50% (5/10)" in terminal.text
    assert "FID: 100% (10/10)" in terminal.text
    line.clear()
    assert terminal.text.endswith("\r" + " " * len("FID: 100% (10/10)") + "\r")


def test_cli_missing_fake_folder_named(tmp_path, capsys):
    import argparse

    from workbench.core.fid_cli import add_fid_arguments, run_fid

    parser = argparse.ArgumentParser()
    add_fid_arguments(parser)
    missing = tmp_path / "no-such-run"
    code = run_fid(parser.parse_args(["--fake", str(missing), "--extractor", "points"]))
    err = capsys.readouterr().err
    assert code == 2
    assert "fake" in err
    assert str(missing) in err
    assert "real: missing" not in err
