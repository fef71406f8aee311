"""NaN and infinity during training: the run stops, the last good checkpoint stays, resuming works."""

from __future__ import annotations

import math
import threading
import time

import pytest
import torch

from workbench.core import runs
from workbench.core.config import build_config
from workbench.core.trainer import NonFiniteError, Trainer

SMALL = dict(data="ring8", preset="dcgan", width=16, batch_size=16, steps=20, checkpoint_every=2,
             sample_every=1000, log_every=1000, seed=4)
BAD_STEP = 5


def _poison(trainer: Trainer, network: str, value: float) -> None:
    """Multiply the discriminator ("d") or generator ("g") loss by ``value`` while step BAD_STEP trains."""
    attribute = "d_loss_fn" if network == "d" else "g_loss_fn"
    original = getattr(trainer, attribute)

    def loss(*args):
        result = original(*args)
        if trainer.step == BAD_STEP - 1:  # self.step is incremented after the updates
            return result * value
        return result

    setattr(trainer, attribute, loss)


@pytest.mark.parametrize("network, value, quantity", [
    ("d", math.nan, "loss_d"),
    ("g", math.inf, "loss_g"),
])
def test_non_finite_stops_at_step(tmp_path, network, value, quantity):
    run_dir = tmp_path / "run"
    trainer = Trainer(build_config(SMALL), run_dir)
    _poison(trainer, network, value)
    with pytest.raises(NonFiniteError) as error:
        trainer.run()
    trainer.close()

    assert error.value.step == BAD_STEP
    assert trainer.step == BAD_STEP   # stopped at the bad step, not at the next read-back
    assert error.value.quantity == quantity
    assert f"step {BAD_STEP}" in str(error.value)
    assert quantity in str(error.value)
    # The checkpoint on disk is the last good one (checkpoint_every=2), with finite weights.
    state = runs.load_checkpoint(run_dir / runs.CHECKPOINT_FILE)
    assert state["step"] == BAD_STEP - 1
    for name in ("generator", "discriminator"):
        assert all(torch.isfinite(t).all() for t in state[name].values()), name
    # The metrics log stops at the last good step.
    steps = [row["step"] for row in runs.read_metrics(run_dir / runs.METRICS_FILE)]
    assert steps == list(range(1, BAD_STEP))


def test_resume_after_nan_with_lower_lr(tmp_path):
    run_dir = tmp_path / "run"
    trainer = Trainer(build_config(SMALL), run_dir)
    _poison(trainer, "d", math.nan)
    with pytest.raises(NonFiniteError):
        trainer.run()
    trainer.close()

    lower = build_config(dict(SMALL, lr_g=2e-5, lr_d=2e-5))
    resumed = Trainer(lower, run_dir, resume=True)
    assert resumed.step == BAD_STEP - 1
    resumed.run(steps=4)
    resumed.close()
    rows = runs.read_metrics(run_dir / runs.METRICS_FILE)
    assert [row["step"] for row in rows] == list(range(1, BAD_STEP + 4))
    for row in rows:
        assert math.isfinite(row["loss_d"]), row["step"]
        assert math.isfinite(row["loss_g"]), row["step"]
    assert runs.read_config(run_dir)["lr_g"] == 2e-5


def test_resume_applies_new_lr(tmp_path):
    run_dir = tmp_path / "run"
    trainer = Trainer(build_config(SMALL), run_dir)
    trainer.run(steps=2)
    trainer.close()
    resumed = Trainer(build_config(dict(SMALL, lr_g=2e-5, lr_d=3e-5)), run_dir, resume=True)
    resumed.close()
    assert resumed.opt_g.param_groups[0]["lr"] == 2e-5
    assert resumed.opt_d.param_groups[0]["lr"] == 3e-5


def test_paused_run_writes_queued_rows(tmp_path):
    config = build_config(dict(SMALL, steps=100_000, checkpoint_every=100_000))
    trainer = Trainer(config, tmp_path / "run")
    thread = threading.Thread(target=trainer.run)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while trainer.step < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        trainer.request_pause()
        time.sleep(0.5)   # the step in progress ends, then the run waits
        steps = [row["step"] for row in runs.read_metrics(tmp_path / "run" / runs.METRICS_FILE)]
        assert trainer.step >= 5
        assert steps == list(range(1, trainer.step + 1))
    finally:
        trainer.request_stop()
        thread.join(30)
        trainer.close()
