"""Step mechanics, determinism, resume and presets of the core trainer."""

import json
import math

import pytest
import torch

from tests.helpers import require_cifar, require_mnist
from workbench.core import runs
from workbench.core.config import PRESETS, build_config
from workbench.core.trainer import NonFiniteError, Trainer

SMALL_POINTS = dict(data="ring8", width=32, batch_size=32, log_every=1000)


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_n_critic_counts_discriminator_updates():
    trainer = Trainer(build_config(dict(SMALL_POINTS, preset="wgan-gp", steps=3)))
    calls = []
    original = trainer.opt_d.step
    trainer.opt_d.step = lambda *a, **k: (calls.append(1), original(*a, **k))[1]
    trainer.train_step()
    assert len(calls) == 5
    trainer.train_step()
    assert len(calls) == 10


def test_discriminator_update_leaves_generator_unchanged():
    trainer = Trainer(build_config(dict(SMALL_POINTS, preset="dcgan", steps=3)))
    g_before, d_before = _params(trainer.generator), _params(trainer.discriminator)
    trainer._discriminator_step()
    assert _same(g_before, _params(trainer.generator))
    assert not _same(d_before, _params(trainer.discriminator))


def test_generator_update_leaves_discriminator_unchanged():
    trainer = Trainer(build_config(dict(SMALL_POINTS, preset="dcgan", steps=3)))
    g_before, d_before = _params(trainer.generator), _params(trainer.discriminator)
    trainer._generator_step()
    assert _same(d_before, _params(trainer.discriminator))
    assert not _same(g_before, _params(trainer.generator))
    assert all(p.requires_grad for p in trainer.discriminator.parameters())


def test_critic_gradients_zeroed_between_updates():
    trainer = Trainer(build_config(dict(SMALL_POINTS, preset="wgan", steps=3)))
    norms = []
    original_backward = torch.Tensor.backward

    def record(tensor, *args, **kwargs):
        grads = [p.grad for p in trainer.discriminator.parameters()]
        norms.append(all(g is None for g in grads))
        return original_backward(tensor, *args, **kwargs)

    torch.Tensor.backward = record
    try:
        for _ in range(5):
            trainer._discriminator_step()
    finally:
        torch.Tensor.backward = original_backward
    assert norms == [True] * 5


def test_metrics_row_columns_and_values():
    trainer = Trainer(build_config(dict(SMALL_POINTS, preset="wgan-gp", steps=2)))
    row = trainer.train_step()
    assert list(row) == list(runs.METRIC_COLUMNS)
    assert row["step"] == 1
    for name in ("loss_d", "loss_g", "grad_norm_d", "grad_norm_g", "d_real", "d_fake", "wasserstein", "gp"):
        assert math.isfinite(row[name]), name
    assert row["wasserstein"] == pytest.approx(row["d_real"] - row["d_fake"], rel=1e-5, abs=1e-6)


def test_bce_reports_probabilities_and_no_wasserstein():
    trainer = Trainer(build_config(dict(SMALL_POINTS, preset="dcgan", steps=2)))
    row = trainer.train_step()
    assert 0.0 < row["d_real"] < 1.0
    assert 0.0 < row["d_fake"] < 1.0
    assert math.isnan(row["wasserstein"])
    assert math.isnan(row["gp"])


def _metrics_without_time(path):
    return [{k: v for k, v in row.items() if k != "wall_time"} for row in runs.read_metrics(path)]


def test_seeded_runs_repeat_exactly(tmp_path):
    config = build_config(dict(SMALL_POINTS, preset="wgan-gp", steps=20, seed=7))
    for name in ("a", "b"):
        trainer = Trainer(config, tmp_path / name)
        trainer.run()
        trainer.close()
    first = _metrics_without_time(tmp_path / "a" / runs.METRICS_FILE)
    second = _metrics_without_time(tmp_path / "b" / runs.METRICS_FILE)
    assert len(first) == 20
    assert first == second


@pytest.mark.parametrize("preset", ["wgan-gp", "wgan"])
def test_resume_matches_straight_run(tmp_path, preset):
    config = build_config(dict(SMALL_POINTS, preset=preset, steps=200, seed=3, checkpoint_every=100))
    straight = Trainer(config, tmp_path / "straight")
    straight.run()
    straight.close()

    first = Trainer(config, tmp_path / "split")
    first.run(steps=100)
    first.close()
    del first
    resumed = Trainer(config, tmp_path / "split", resume=True)
    assert resumed.step == 100
    resumed.run()
    resumed.close()

    expected = _metrics_without_time(tmp_path / "straight" / runs.METRICS_FILE)
    actual = _metrics_without_time(tmp_path / "split" / runs.METRICS_FILE)
    assert len(actual) == 200
    assert actual == expected


def test_resume_images_with_spectral_norm(tmp_path):
    data = require_mnist()
    config = build_config(dict(data=f"mnist:{data}", preset="sngan", steps=6, n_critic=2, width=8,
                               batch_size=16, checkpoint_every=3, seed=1))
    straight = Trainer(config, tmp_path / "straight")
    straight.run()
    straight.close()
    first = Trainer(config, tmp_path / "split")
    first.run(steps=3)
    first.close()
    resumed = Trainer(config, tmp_path / "split", resume=True)
    resumed.run()
    resumed.close()
    assert _metrics_without_time(tmp_path / "split" / runs.METRICS_FILE) == \
        _metrics_without_time(tmp_path / "straight" / runs.METRICS_FILE)


def test_run_folder_contents(tmp_path):
    config = build_config(dict(SMALL_POINTS, preset="sngan", steps=10, sample_every=5, checkpoint_every=5))
    trainer = Trainer(config, tmp_path / "run")
    trainer.run()
    trainer.close()
    folder = tmp_path / "run"
    saved = json.loads((folder / runs.CONFIG_FILE).read_text())
    assert saved["preset"] == "sngan"
    assert saved["constraint"] == "sn"
    header = (folder / runs.METRICS_FILE).read_text().splitlines()[0]
    assert header == ",".join(runs.METRIC_COLUMNS)
    assert sorted(p.name for p in (folder / "samples").iterdir()) == ["step_000005.png", "step_000010.png"]
    state = torch.load(folder / runs.CHECKPOINT_FILE, weights_only=True)
    assert state["step"] == 10
    for key in ("generator", "discriminator", "opt_g", "opt_d", "fixed_noise", "rng_cpu", "config", "sampler"):
        assert key in state, key
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_trains_on_mnist(tmp_path, preset):
    data = require_mnist()
    config = build_config(dict(data=f"mnist:{data}", preset=preset, steps=30, width=16, batch_size=32,
                               sample_every=30, log_every=30))
    trainer = Trainer(config, tmp_path / preset)
    trainer.run()
    trainer.close()
    rows = runs.read_metrics(tmp_path / preset / runs.METRICS_FILE)
    assert len(rows) == 30
    for row in rows:
        for name in ("loss_d", "loss_g", "grad_norm_d", "grad_norm_g"):
            assert math.isfinite(row[name]), (preset, name, row["step"])
    assert (tmp_path / preset / "samples" / "step_000030.png").is_file()
    assert (tmp_path / preset / runs.CHECKPOINT_FILE).is_file()


def test_folder_of_cifar_jpegs_trains(tmp_path):
    data = require_cifar()
    config = build_config(dict(data=f"folder:{data}", preset="dcgan", steps=30, width=16, batch_size=32,
                               sample_every=30))
    trainer = Trainer(config, tmp_path / "cifar")
    assert trainer.dataset.shape == (3, 32, 32)
    trainer.run()
    trainer.close()
    rows = runs.read_metrics(tmp_path / "cifar" / runs.METRICS_FILE)
    assert len(rows) == 30
    assert all(math.isfinite(r["loss_d"]) and math.isfinite(r["loss_g"]) for r in rows)


def test_non_finite_loss_stops_with_step_and_name(tmp_path):
    config = build_config(dict(SMALL_POINTS, preset="dcgan", steps=10, checkpoint_every=2))
    trainer = Trainer(config, tmp_path / "run")
    trainer.run(steps=2)
    good = torch.load(tmp_path / "run" / runs.CHECKPOINT_FILE, weights_only=True)
    with torch.no_grad():
        next(trainer.discriminator.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteError) as error:
        trainer.train_step()
    trainer.close()
    assert error.value.step == 3
    assert error.value.quantity == "loss_d"
    on_disk = torch.load(tmp_path / "run" / runs.CHECKPOINT_FILE, weights_only=True)
    assert on_disk["step"] == good["step"] == 2


def test_single_updates_change_one_network():
    trainer = Trainer(build_config(dict(SMALL_POINTS, preset="wgan", steps=3)))
    g_before, d_before = _params(trainer.generator), _params(trainer.discriminator)
    d_values = trainer.update_discriminator_once()
    assert _same(g_before, _params(trainer.generator))
    assert not _same(d_before, _params(trainer.discriminator))
    assert max(p.abs().max().item() for p in trainer.discriminator.parameters()) <= 0.01
    assert set(d_values) >= {"loss_d", "grad_norm_d", "d_real", "d_fake", "wasserstein"}
    d_after = _params(trainer.discriminator)
    g_values = trainer.update_generator_once()
    assert _same(d_after, _params(trainer.discriminator))
    assert not _same(g_before, _params(trainer.generator))
    assert set(g_values) == {"loss_g", "grad_norm_g"}
    assert trainer.step == 0


def test_failure_keeps_completed_rows(tmp_path):
    # Rows wait in a queue for up to 50 ms, so a failure must still write the steps that completed.
    trainer = Trainer(build_config(dict(data="ring8", preset="wgan-gp", width=16, batch_size=16, steps=50,
                                        log_every=1000, sample_every=1000, checkpoint_every=1000)), tmp_path / "run")
    original = trainer._update

    def update():
        if trainer.step == 3:
            raise RuntimeError("simulated failure after step 3")
        original()

    trainer._update = update
    with pytest.raises(RuntimeError, match="after step 3"):
        trainer.run()
    trainer.close()
    steps = [row["step"] for row in runs.read_metrics(tmp_path / "run" / runs.METRICS_FILE)]
    assert steps == [1, 2, 3]
    assert json.loads((tmp_path / "run" / runs.STATUS_FILE).read_text())["state"] == "failed"
