"""Listing, state, rename, delete and fork of run folders."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from workbench.core import run_index, runs
from workbench.core.config import build_config
from workbench.core.trainer import Trainer
from workbench.core.validation import ConfigError

SMALL = dict(data="ring8", preset="dcgan", width=16, batch_size=16, steps=20, checkpoint_every=4,
             sample_every=1000, log_every=1000, seed=2)


def _train(run_dir, steps, **settings):
    trainer = Trainer(build_config(dict(SMALL, **settings)), run_dir)
    trainer.run(steps=steps)
    trainer.close()
    return trainer


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# ----- status.json ------------------------------------------------------------------

def test_status_round_trip(tmp_path):
    before = time.time()
    runs.write_status(tmp_path, "stopped", 12, "stopped by the user")
    status = runs.read_status(tmp_path)
    assert status["state"] == "stopped"
    assert status["step"] == 12
    assert status["message"] == "stopped by the user"
    assert status["pid"] == os.getpid()
    assert status["host"] == socket.gethostname()
    assert before <= status["updated"] <= time.time()


def test_status_rejects_unknown_state(tmp_path):
    with pytest.raises(ValueError, match="paused"):
        runs.write_status(tmp_path, "paused", 1)


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '{"state": "dancing", "step": 1, "updated": 0}',
                                  '{"state": "running", "step": "7", "updated": 0}'])
def test_status_invalid_file_ignored(tmp_path, caplog, text):
    (tmp_path / runs.STATUS_FILE).write_text(text)
    assert runs.read_status(tmp_path) is None
    assert "ignoring" in caplog.text


def _status(state="running", pid=None, host=None, age=0.0, message=""):
    return {"state": state, "step": 5, "message": message, "pid": os.getpid() if pid is None else pid,
            "host": socket.gethostname() if host is None else host, "updated": time.time() - age}


@pytest.mark.parametrize("status, expected", [
    (None, "stopped"),
    ("live", "running"),
    ("dead", "failed"),
    ("stale", "failed"),
    ("other_host", "running"),
    ("other_host_stale", "failed"),
    ("stopped", "stopped"),
    ("finished", "finished"),
])
def test_run_state_cases(status, expected):
    cases = {
        None: None,
        "live": _status(),
        "dead": _status(pid=_dead_pid()),
        "stale": _status(age=run_index.STALE_AFTER_S + 1),
        "other_host": _status(host="elsewhere.example", pid=1),
        "other_host_stale": _status(host="elsewhere.example", age=run_index.STALE_AFTER_S + 1),
        "stopped": _status("stopped", message="stopped by the user"),
        "finished": _status("finished"),
    }
    state, message = run_index.run_state(cases[status], steps_done=5, steps_total=20)
    assert state == expected
    if status == "dead":
        assert "killed" in message
    if status == "stopped":
        assert message == "stopped by the user"


def test_run_state_without_status_finished():
    assert run_index.run_state(None, steps_done=20, steps_total=20) == ("finished", "")


def test_pid_alive():
    assert runs.pid_alive(os.getpid())
    assert not runs.pid_alive(_dead_pid())
    assert not runs.pid_alive(0)
    assert not runs.pid_alive(-5)
    assert not runs.pid_alive(None)


# ----- listing ----------------------------------------------------------------------

def test_list_runs_describes_each(tmp_path):
    root = tmp_path / "runs"
    _train(root / "a-done", steps=20)
    runs.write_status(root / "a-done", "finished", 20)
    runs.append_fid(root / "a-done", 10, 12.5, "inception", 1000)
    runs.append_fid(root / "a-done", 20, 7.25, "inception", 1000)
    _train(root / "b-broken", steps=6, preset="wgan-gp")
    runs.write_status(root / "b-broken", "failed", 4, "training stopped at step 5: loss_d is nan")
    (root / "c-garbled").mkdir()
    (root / "c-garbled" / runs.CONFIG_FILE).write_text("{not json")
    (root / ".staging.x1").mkdir()
    (root / "notes").mkdir()
    (root / "readme.txt").write_text("not a run")

    infos = run_index.list_runs(root)
    assert [info.name for info in infos] == ["a-done", "b-broken", "c-garbled"]
    done, broken, garbled = infos
    assert (done.data, done.preset, done.loss, done.constraint) == ("ring8", "dcgan", "bce", "none")
    assert (done.steps_done, done.steps_total, done.state) == (20, 20, "finished")
    assert (done.last_fid, done.last_fid_step) == (7.25, 20)
    assert done.parent is None
    assert (broken.loss, broken.constraint, broken.steps_done, broken.state) == ("wasserstein", "gp", 6, "failed")
    assert "loss_d is nan" in broken.message
    assert broken.last_fid is None
    assert garbled.state == "stopped"
    assert "cannot be read" in garbled.message
    assert garbled.data == "?"


def test_list_runs_missing_root(tmp_path):
    assert run_index.list_runs(tmp_path / "nowhere") == []


def test_fid_csv_torn_line(tmp_path):
    runs.append_fid(tmp_path, 5, 30.0, "inception", 500)
    with open(tmp_path / runs.FID_FILE, "a") as handle:
        handle.write("10,2")  # a crash mid-line
    assert runs.read_fid(tmp_path) == [{"step": 5, "value": 30.0, "extractor": "inception", "n": 500,
                                        "precision": None, "recall": None}]


def test_last_metrics_step_skips_torn_line(tmp_path):
    path = tmp_path / runs.METRICS_FILE
    _train(tmp_path / "run", steps=3)
    path.write_bytes((tmp_path / "run" / runs.METRICS_FILE).read_bytes() + b"4,0.5,0.")
    assert runs.last_metrics_step(path) == 3
    assert runs.last_metrics_step(tmp_path / "missing.csv") is None


# ----- rename and delete ------------------------------------------------------------

@pytest.mark.parametrize("name", ["", "   ", "a/b", "a\\b", "con:1", "what?", ".hidden", "trailing.",
                                  "tab\there", "x" * 256, 42])
def test_rename_rejects_bad_name(tmp_path, name):
    _train(tmp_path / "run", steps=2)
    with pytest.raises(ConfigError) as error:
        run_index.rename_run(tmp_path / "run", name)
    assert error.value.field == "name"
    assert (tmp_path / "run").is_dir()


def test_rename_moves_folder_and_relinks_forks(tmp_path):
    _train(tmp_path / "parent", steps=4)
    run_index.fork_run(tmp_path / "parent", tmp_path / "child", {"lr_g": 1e-4})
    new_path = run_index.rename_run(tmp_path / "parent", "  renamed-parent ")
    assert new_path == tmp_path / "renamed-parent"
    assert not (tmp_path / "parent").exists()
    assert runs.read_config(new_path)["preset"] == "dcgan"
    assert runs.read_parent(tmp_path / "child") == (new_path.absolute(), 4)


def test_rename_refuses_existing_and_running(tmp_path):
    _train(tmp_path / "one", steps=2)
    _train(tmp_path / "two", steps=2)
    with pytest.raises(ConfigError, match="already exists"):
        run_index.rename_run(tmp_path / "one", "two")
    runs.write_status(tmp_path / "one", "running", 2)  # this live process
    with pytest.raises(ConfigError, match="training"):
        run_index.rename_run(tmp_path / "one", "three")


def test_delete_moves_to_trash(tmp_path):
    _train(tmp_path / "run", steps=2)
    _train(tmp_path / "keep", steps=2)
    trashed = run_index.delete_run(tmp_path / "run")
    assert trashed == tmp_path / run_index.TRASH_DIR / "run"
    assert runs.last_metrics_step(trashed / runs.METRICS_FILE) == 2
    assert [info.name for info in run_index.list_runs(tmp_path)] == ["keep"]
    # A second run of the same name gets its own place in the trash.
    _train(tmp_path / "run", steps=2)
    assert run_index.delete_run(tmp_path / "run") == tmp_path / run_index.TRASH_DIR / "run-2"


def test_delete_permanent(tmp_path):
    _train(tmp_path / "run", steps=2)
    assert run_index.delete_run(tmp_path / "run", permanent=True) is None
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / run_index.TRASH_DIR).exists()


def test_delete_refuses_non_run_and_running(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(ConfigError, match="not a run folder"):
        run_index.delete_run(tmp_path / "photos", permanent=True)
    assert (tmp_path / "photos" / "cat.jpg").is_file()
    _train(tmp_path / "run", steps=2)
    runs.write_status(tmp_path / "run", "running", 2)
    with pytest.raises(ConfigError, match="training"):
        run_index.delete_run(tmp_path / "run")
    assert (tmp_path / "run").is_dir()


# ----- fork -------------------------------------------------------------------------

def test_fork_records_parent_and_new_settings(tmp_path):
    _train(tmp_path / "parent", steps=5)  # checkpoint at step 4, metrics up to 5
    child = run_index.fork_run(tmp_path / "parent", tmp_path / "child", {"lr_g": 5e-5, "lr_d": "4e-5"})
    assert child == tmp_path / "child"
    config = runs.read_config(child)
    assert (config["lr_g"], config["lr_d"], config["preset"]) == (5e-5, 4e-5, "dcgan")
    assert runs.read_parent(child) == ((tmp_path / "parent").absolute(), 4)
    info = run_index.describe_run(child)
    assert (info.state, info.steps_done, info.parent_step) == ("stopped", 4, 4)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    state = runs.load_checkpoint(child / runs.CHECKPOINT_FILE)
    parent_state = runs.load_checkpoint(tmp_path / "parent" / runs.CHECKPOINT_FILE)
    assert state["step"] == 4
    assert state["config"]["lr_g"] == 5e-5
    for key, value in parent_state["generator"].items():
        assert torch.equal(state["generator"][key], value), key
    # The optimizer state is kept; only the learning rate changes.
    assert state["opt_g"]["param_groups"][0]["lr"] == 5e-5
    assert state["opt_d"]["param_groups"][0]["lr"] == 4e-5
    assert torch.equal(state["opt_g"]["state"][0]["exp_avg"], parent_state["opt_g"]["state"][0]["exp_avg"])


def test_fork_trains_and_metrics_continue_parent(tmp_path):
    _train(tmp_path / "parent", steps=5)
    run_index.fork_run(tmp_path / "parent", tmp_path / "child", {"lr_g": 5e-5})
    trainer = Trainer(build_config(runs.read_config(tmp_path / "child")), tmp_path / "child", resume=True)
    assert trainer.step == 4
    assert trainer.opt_g.param_groups[0]["lr"] == 5e-5
    trainer.run(steps=3)
    trainer.close()

    joined = run_index.load_metrics_with_parent(tmp_path / "child")
    parent_rows = runs.read_metrics(tmp_path / "parent" / runs.METRICS_FILE)
    child_rows = runs.read_metrics(tmp_path / "child" / runs.METRICS_FILE)
    assert [row["step"] for row in joined] == [1, 2, 3, 4, 5, 6, 7]
    assert joined[:4] == parent_rows[:4]
    assert joined[4:] == child_rows
    assert joined[4] != parent_rows[4]  # step 5 is the child's, trained with another lr
    # Resuming rewrote config.json, but the lineage lives in parent.json and survives.
    assert run_index.describe_run(tmp_path / "child").parent_step == 4


def test_fork_of_fork_and_lost_parent(tmp_path, caplog):
    _train(tmp_path / "a", steps=4)
    run_index.fork_run(tmp_path / "a", tmp_path / "b", {})
    _train_resume(tmp_path / "b", steps=4)                # b: steps 5..8, checkpoint at 8
    run_index.fork_run(tmp_path / "b", tmp_path / "c", {"lr_d": 1e-4})
    _train_resume(tmp_path / "c", steps=2)                # c: steps 9..10
    joined = run_index.load_metrics_with_parent(tmp_path / "c")
    assert [row["step"] for row in joined] == list(range(1, 11))

    run_index.delete_run(tmp_path / "a", permanent=True)
    caplog.set_level(logging.WARNING)
    assert [row["step"] for row in run_index.load_metrics_with_parent(tmp_path / "b")] == [5, 6, 7, 8]
    assert "missing" in caplog.text


def _train_resume(run_dir, steps):
    trainer = Trainer(build_config(runs.read_config(run_dir)), run_dir, resume=True)
    trainer.run(steps=steps)
    trainer.close()


def test_fork_switches_optimizer_and_preset(tmp_path):
    _train(tmp_path / "parent", steps=4)
    run_index.fork_run(tmp_path / "parent", tmp_path / "rms", {"optimizer": "rmsprop", "lr_d": 1e-4})
    state = runs.load_checkpoint(tmp_path / "rms" / runs.CHECKPOINT_FILE)
    assert state["opt_d"]["state"] == {}
    assert "alpha" in state["opt_d"]["param_groups"][0]
    _train_resume(tmp_path / "rms", steps=2)
    assert runs.last_metrics_step(tmp_path / "rms" / runs.METRICS_FILE) == 6

    run_index.fork_run(tmp_path / "parent", tmp_path / "gp", {"preset": "wgan-gp"})
    config = build_config(runs.read_config(tmp_path / "gp"))
    assert (config.preset, config.loss, config.constraint, config.n_critic) == ("wgan-gp", "wasserstein", "gp", 5)
    assert config.betas == (0.0, 0.9)
    assert config.width == 16
    _train_resume(tmp_path / "gp", steps=1)


@pytest.mark.parametrize("overrides, field, words", [
    ({"width": 32}, "width", "width=16"),
    ({"z_dim": 8}, "z_dim", "z_dim=2"),
    ({"constraint": "sn"}, "constraint", "sn"),
    ({"d_norm": "layer"}, "d_norm", "d_norm='none'"),
    ({"data": "grid25"}, "data", "sampler"),
    ({"seed": 99}, "seed", "random state"),
    ({"num_samples": 16}, "num_samples", "fixed noise"),
    ({"lr_g": -1}, "lr_g", "greater than 0"),
    ({"learning_rate": 0.1}, "learning_rate", "unknown setting"),
])
def test_fork_rejects_incompatible(tmp_path, overrides, field, words):
    _train(tmp_path / "parent", steps=4)
    with pytest.raises(ConfigError) as error:
        run_index.fork_run(tmp_path / "parent", tmp_path / "child", overrides)
    assert error.value.field == field
    assert words in str(error.value)
    assert not (tmp_path / "child").exists()


def test_fork_rejects_leaving_sn(tmp_path):
    _train(tmp_path / "parent", steps=4, constraint="sn")
    with pytest.raises(ConfigError) as error:
        run_index.fork_run(tmp_path / "parent", tmp_path / "child", {"constraint": "gp"})
    assert error.value.field == "constraint"
    run_index.fork_run(tmp_path / "parent", tmp_path / "child", {"loss": "hinge"})
    _train_resume(tmp_path / "child", steps=1)


def test_fork_rejects_other_image_size():
    state = {"model": {"z_dim": 64, "width": 32, "d_norm": "batch", "shape": [1, 28, 28]}, "generator": {}}
    config = build_config(dict(data="mnist:/data/mnist", image_size=32))
    with pytest.raises(ConfigError) as error:
        run_index.check_fork_compatible(state, config)
    assert error.value.field == "image_size"
    assert "image_size to 28" in str(error.value)


def test_fork_rejects_used_folder_and_missing_source(tmp_path):
    _train(tmp_path / "parent", steps=4)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file.txt").write_text("x")
    with pytest.raises(ConfigError) as error:
        run_index.fork_run(tmp_path / "parent", tmp_path / "busy", {})
    assert error.value.field == "new_run_dir"
    with pytest.raises(ConfigError) as error:
        run_index.fork_run(tmp_path / "nothing", tmp_path / "child", {})
    assert error.value.field == "checkpoint"


def test_parent_json_contents(tmp_path):
    _train(tmp_path / "parent", steps=4)
    run_index.fork_run(tmp_path / "parent", tmp_path / "child", {})
    record = json.loads((tmp_path / "child" / runs.PARENT_FILE).read_text())
    assert record == {"parent": str((tmp_path / "parent").absolute()), "parent_step": 4}


def test_fork_compares_layer_shapes(tmp_path):
    _train(tmp_path / "parent", steps=4)
    path = tmp_path / "parent" / runs.CHECKPOINT_FILE
    state = torch.load(path, weights_only=True)
    del state["model"]  # without the model entry only the layer shapes reveal the width
    torch.save(state, path)
    with pytest.raises(ConfigError) as error:
        run_index.fork_run(tmp_path / "parent", tmp_path / "child", {"width": 32})
    assert error.value.field == "checkpoint"
    assert "generator" in str(error.value)
    assert "net.0.bias" in str(error.value)
