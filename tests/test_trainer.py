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


def _train(config, run_dir, steps=None, **options):
    """Build a Trainer for ``run_dir``, train ``steps`` steps (all by default), close it and return it."""
    trainer = Trainer(config, run_dir, **options)
    trainer.run(steps=steps)
    trainer.close()
    return trainer


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
    _train(config, tmp_path / "straight")
    _train(config, tmp_path / "split", steps=100)
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
    _train(config, tmp_path / "straight")
    _train(config, tmp_path / "split", steps=3)
    _train(config, tmp_path / "split", resume=True)
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


def test_fused_adam_matches_default_adam():
    # The trainer picks torch's fused Adam kernel on the CPU; the updates must be Adam's all the same.
    config = build_config(dict(SMALL_POINTS, preset="wgan-gp", steps=3, seed=5))
    trainer = Trainer(config)   # seeds torch's generator, so both runs draw the same noise
    assert trainer.opt_d.param_groups[0]["fused"] is True
    assert trainer.opt_g.param_groups[0]["fused"] is True
    for _ in range(3):
        trainer.train_step()
    plain = Trainer(config)
    plain.opt_d = torch.optim.Adam(plain.discriminator.parameters(), lr=config.lr_d, betas=tuple(config.betas))
    plain.opt_g = torch.optim.Adam(plain.generator.parameters(), lr=config.lr_g, betas=tuple(config.betas))
    assert plain.opt_d.param_groups[0]["fused"] is None
    for _ in range(3):
        plain.train_step()
    for fused, default in zip(_params(trainer.discriminator) + _params(trainer.generator),
                              _params(plain.discriminator) + _params(plain.generator)):
        assert torch.allclose(fused, default, rtol=0, atol=1e-6)   # measured 1.5e-8
    # Three steps moved the weights far more than the tolerance, so the comparison has teeth.
    first = Trainer(config)
    moved = max((a - b).abs().max().item() for a, b in zip(_params(first.discriminator),
                                                            _params(trainer.discriminator)))
    assert moved > 1e-3


@pytest.mark.parametrize("saved_fused, resumed_fused", [(True, False), (False, True)])
def test_resume_keeps_local_adam_kernel(tmp_path, monkeypatch, saved_fused, resumed_fused):
    # A checkpoint saved where the fused kernel exists may resume where it does not, and the
    # other way round: the moments load, the kernel is the resuming machine's.
    import workbench.core.trainer as trainer_module

    config = build_config(dict(SMALL_POINTS, preset="wgan-gp", steps=4, seed=2, checkpoint_every=2))
    monkeypatch.setattr(trainer_module, "fused_adam_supported", lambda device: saved_fused)
    first = Trainer(config, tmp_path / "run")
    first.run(steps=2)
    first.close()
    saved = torch.load(tmp_path / "run" / runs.CHECKPOINT_FILE, weights_only=False)
    assert bool(saved["opt_d"]["param_groups"][0]["fused"]) is saved_fused

    monkeypatch.setattr(trainer_module, "fused_adam_supported", lambda device: resumed_fused)
    resumed = Trainer(config, tmp_path / "run", resume=True)
    assert bool(resumed.opt_d.param_groups[0]["fused"]) is resumed_fused
    state = resumed.opt_d.state[next(resumed.discriminator.parameters())]
    assert float(state["step"]) == 2 * config.n_critic
    assert torch.equal(state["exp_avg"], saved["opt_d"]["state"][0]["exp_avg"])
    resumed.run()
    resumed.close()
    assert resumed.step == 4


def test_resume_with_another_optimizer_starts_it_empty(tmp_path):
    config = build_config(dict(SMALL_POINTS, preset="wgan-gp", steps=4, seed=2, checkpoint_every=2))
    first = Trainer(config, tmp_path / "run")
    first.run(steps=2)
    first.close()
    switched = build_config(dict(config.to_dict(), optimizer="rmsprop", lr_d=1e-3))
    resumed = Trainer(switched, tmp_path / "run", resume=True)
    assert isinstance(resumed.opt_d, torch.optim.RMSprop)
    assert resumed.opt_d.state == {}
    assert resumed.opt_d.param_groups[0]["lr"] == 1e-3
    assert resumed.step == 2
    resumed.run()
    resumed.close()
    assert resumed.step == 4
    # A second resume reads the switched optimizer back from its own checkpoint.
    again = Trainer(build_config(dict(switched.to_dict(), steps=6)), tmp_path / "run", resume=True)
    assert again.opt_d.state != {}
    again.run()
    assert again.step == 6


@pytest.mark.parametrize("value, text", [(-0.00004, "0.0000"), (-0.00005, "-0.0001"), (0.0, "0.0000"),
                                         (-1.23456, "-1.2346"), (float("nan"), "nan")])
def test_loss_text_unsigned_zero(value, text):
    from workbench.core.trainer import loss_text

    assert loss_text(value) == text


def _synthetic_images(count=64, size=28):
    from workbench.core.data.dataset import ImageDataset

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 1, size, size), dtype=torch.uint8, generator=generator)
    return ImageDataset(images, None, None, "synthetic")


SMALL_IMAGES = dict(data="folder:synthetic", width=8, batch_size=16, log_every=1000)


def test_cpu_images_train_channels_last():
    trainer = Trainer(build_config(dict(SMALL_IMAGES, preset="dcgan", steps=2)), dataset=_synthetic_images())
    channels_last = torch.channels_last
    # With one input channel the two layouts coincide, so only wider kernels tell them apart.
    convolutions = [p for p in trainer._d_parameters + trainer._g_parameters if p.dim() == 4 and p.shape[1] > 1]
    assert len(convolutions) >= 4
    for parameter in convolutions:
        assert parameter.is_contiguous(memory_format=channels_last)
        assert not parameter.is_contiguous()
    assert trainer._real_batch().is_contiguous(memory_format=channels_last)
    points = Trainer(build_config(dict(SMALL_POINTS, preset="dcgan", steps=2)))
    assert points.memory_format is torch.contiguous_format


def test_resume_from_contiguous_checkpoint(tmp_path):
    # A checkpoint from a GPU run or an older version contains contiguous weights and Adam moments.
    dataset = _synthetic_images()
    config = build_config(dict(SMALL_IMAGES, preset="dcgan", steps=4, checkpoint_every=2, seed=1))
    _train(config, tmp_path / "straight", dataset=dataset)
    first = _train(config, tmp_path / "split", steps=2, dataset=dataset)
    path = tmp_path / "split" / runs.CHECKPOINT_FILE
    state = torch.load(path, weights_only=False)
    index = next(i for i, p in enumerate(first._d_parameters) if p.dim() == 4 and p.shape[1] > 1)
    assert not state["opt_d"]["state"][index]["exp_avg"].is_contiguous()
    for name in ("opt_g", "opt_d"):
        for values in state[name]["state"].values():
            for key, value in values.items():
                values[key] = value.contiguous()
    for name in ("generator", "discriminator"):
        state[name] = {key: value.contiguous() for key, value in state[name].items()}
    torch.save(state, path)

    resumed = Trainer(config, tmp_path / "split", resume=True, dataset=dataset)
    resumed_moment = resumed.opt_d.state[resumed._d_parameters[index]]["exp_avg"]
    assert resumed_moment.is_contiguous(memory_format=torch.channels_last)
    assert not resumed_moment.is_contiguous()
    resumed.run()
    resumed.close()
    expected = _metrics_without_time(tmp_path / "straight" / runs.METRICS_FILE)
    actual = _metrics_without_time(tmp_path / "split" / runs.METRICS_FILE)
    assert len(actual) == 4
    assert actual == expected
