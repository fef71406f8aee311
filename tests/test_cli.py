"""The train command: bad input gives one line naming the option, good input a run folder."""

import subprocess
import sys

import pytest

from tests.helpers import REPO, require_mnist
from workbench import __version__
from workbench.cli import main


def _run_bad(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    return code, lines


def _empty_run(tmp_path):
    return ["train", "--data", "ring8", "--steps", "2", "--out", str(tmp_path / "run")]


BAD_OPTIONS = [
    (["--lr-g", "0"], "--lr-g", "0"),
    (["--lr-d", "-0.001"], "--lr-d", "-0.001"),
    (["--batch-size", "0"], "--batch-size", "0"),
    (["--batch-size", "-4"], "--batch-size", "-4"),
    (["--steps", "0"], "--steps", "0"),
    (["--n-critic", "0"], "--n-critic", "0"),
    (["--steps", "ten"], "--steps", "'ten'"),
    (["--preset", "biggan"], "--preset", "'biggan'"),
    (["--loss", "kl"], "--loss", "'kl'"),
    (["--constraint", "dropout"], "--constraint", "'dropout'"),
    (["--betas", "0.5", "1.5"], "--betas", "1.5"),
    (["--device", "tpu"], "--device", "'tpu'"),
]


@pytest.mark.parametrize("extra, field, value", BAD_OPTIONS)
def test_bad_option_one_line(tmp_path, capsys, extra, field, value):
    code, lines = _run_bad(capsys, _empty_run(tmp_path) + extra)
    assert code == 2
    assert len(lines) == 1
    assert field in lines[0]
    assert value in lines[0]
    assert not (tmp_path / "run").exists()


def test_unknown_data_spec(tmp_path, capsys):
    code, lines = _run_bad(capsys, ["train", "--data", "imagenet:/x", "--out", str(tmp_path / "r")])
    assert code == 2
    assert len(lines) == 1
    assert "--data" in lines[0]
    assert "imagenet" in lines[0]
    assert "ring8" in lines[0]  # lists the allowed kinds


def test_missing_data_folder(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code, lines = _run_bad(capsys, ["train", "--data", f"folder:{missing}", "--out", str(tmp_path / "r")])
    assert code == 2
    assert len(lines) == 1
    assert str(missing) in lines[0]


def test_empty_data_folder(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, lines = _run_bad(capsys, ["train", "--data", f"folder:{empty}", "--out", str(tmp_path / "r")])
    assert code == 2
    assert len(lines) == 1
    assert "empty" in lines[0] or "no image" in lines[0]


def test_folder_without_readable_image(tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"not a png at all")
    (folder / "b.jpg").write_bytes(b"")
    code, lines = _run_bad(capsys, ["train", "--data", f"folder:{folder}", "--out", str(tmp_path / "r")])
    assert code == 2
    error_lines = [line for line in lines if "error" in line]
    assert len(error_lines) == 1
    assert "readable" in error_lines[0] or "no image" in error_lines[0]
    assert not (tmp_path / "r").exists()


def test_fewer_images_than_batch(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "few"
    folder.mkdir()
    for i in range(5):
        Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(folder / f"{i}.png")
    code, lines = _run_bad(capsys, ["train", "--data", f"folder:{folder}", "--batch-size", "8",
                                    "--out", str(tmp_path / "r")])
    assert code == 2
    assert len(lines) == 1
    assert "--batch-size" in lines[0]
    assert "5" in lines[0]
    assert not (tmp_path / "r").exists()


def test_existing_run_rejected_without_resume(tmp_path, capsys):
    argv = _empty_run(tmp_path) + ["--width", "8", "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    code, lines = _run_bad(capsys, argv)
    assert code == 2
    assert len(lines) == 1
    assert "already contains a run" in lines[0]
    assert "--resume" in lines[0]


def test_resume_extends_run(tmp_path, capsys):
    argv = _empty_run(tmp_path) + ["--width", "8", "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    resume = ["train", "--steps", "4", "--out", str(tmp_path / "run"), "--resume"]
    assert main(resume) == 0
    out = capsys.readouterr().out
    assert "finished at step 4/4" in out
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 5  # header and four steps


def test_config_file_and_override(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('data = "ring8"\npreset = "wgan"\nsteps = 3\nwidth = 8\nn_critic = 2\n')
    assert main(["train", "--config", str(config), "--n-critic", "1", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    import json

    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["preset"] == "wgan"
    assert saved["n_critic"] == 1
    assert saved["steps"] == 3
    assert saved["constraint"] == "clip"


def test_train_prints_run_folder(tmp_path, capsys):
    assert main(["train", "--data", "grid25", "--preset", "sngan", "--steps", "3", "--width", "8",
                 "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert f"run folder: {tmp_path / 'run'}" in out
    assert "finished at step 3/3" in out


def test_wasserstein_without_constraint_warns(tmp_path, capsys):
    assert main(["train", "--data", "ring8", "--loss", "wasserstein", "--constraint", "none", "--steps", "1",
                 "--width", "8", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "not Lipschitz-bounded" in out


def test_no_traceback_in_subprocess(tmp_path):
    result = subprocess.run([sys.executable, "-m", "workbench", "train", "--data", "ring8", "--lr-g", "-1",
                             "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "--lr-g" in result.stderr


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_mnist_run_from_cli(tmp_path, capsys):
    data = require_mnist()
    assert main(["train", "--data", f"mnist:{data}", "--preset", "dcgan", "--steps", "2", "--width", "8",
                 "--batch-size", "16", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert (tmp_path / "run" / "samples" / "step_000002.png").is_file()


def test_resume_rejects_changed_data_and_preset(tmp_path, capsys):
    argv = _empty_run(tmp_path) + ["--width", "8", "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    for extra, option in ((["--data", "grid25"], "--data"), (["--preset", "wgan"], "--preset"),
                          (["--steps", "2"], "--steps")):
        code, lines = _run_bad(capsys, ["train", "--resume", "--out", str(tmp_path / "run"), *extra])
        assert code == 2
        assert len(lines) == 1
        assert lines[0].startswith(f"gan-workbench: error: {option}:")
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3  # header and the two original steps, untouched


def test_unwritable_out_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, lines = _run_bad(capsys, ["train", "--data", "ring8", "--out", str(blocker / "run")])
    assert code == 2
    assert len(lines) == 1
    assert "--out" in lines[0]
    assert "cannot create the run folder" in lines[0]
