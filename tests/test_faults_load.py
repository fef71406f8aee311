"""Loading checkpoints that are malicious, from another device, mismatched or damaged."""

from __future__ import annotations

import io
import os

import pytest
import torch
import torch.serialization
from torch import nn

from workbench.core import runs
from workbench.core.checkpoint import load_generator
from workbench.core.config import build_config
from workbench.core.models import MLPDiscriminator
from workbench.core.trainer import Trainer
from workbench.core.validation import ConfigError

SMALL = dict(data="ring8", preset="dcgan", width=16, batch_size=16, steps=20, checkpoint_every=2,
             sample_every=1000, log_every=1000)


@pytest.fixture
def trained(tmp_path):
    """A run folder with a checkpoint at step 2 of a width-16 ring8 model."""
    run_dir = tmp_path / "run"
    trainer = Trainer(build_config(SMALL), run_dir)
    trainer.run(steps=2)
    trainer.close()
    return run_dir


class MakeMarker:
    """Unpickling this object calls os.mkdir(path): code run by merely loading a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_pickle_payload_rejected(trained, tmp_path):
    marker = tmp_path / "code_ran"
    state = torch.load(trained / runs.CHECKPOINT_FILE, weights_only=True)
    state["config"] = {"data": "ring8", "payload": MakeMarker(marker)}
    torch.save(state, trained / runs.CHECKPOINT_FILE)

    # The payload is real: an unsafe load runs it.
    unsafe_marker = tmp_path / "unsafe_marker"
    probe = io.BytesIO()
    torch.save(MakeMarker(unsafe_marker), probe)
    probe.seek(0)
    torch.load(probe, weights_only=False)
    assert unsafe_marker.is_dir()

    with pytest.raises(ConfigError) as error:
        runs.load_checkpoint(trained / runs.CHECKPOINT_FILE)
    assert error.value.field == "checkpoint"
    assert "objects other than tensors" in str(error.value)
    with pytest.raises(ConfigError):
        load_generator(trained)
    with pytest.raises(ConfigError):
        Trainer(build_config(SMALL), trained, resume=True)
    assert not marker.exists()


def _save_tagged_cuda(state, path, monkeypatch):
    """Save ``state`` with every storage recorded as living on cuda:0, as a GPU machine would."""
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(state, path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks loading CUDA tensors where CUDA is absent")
def test_cuda_checkpoint_loads_on_cpu(trained, monkeypatch):
    path = trained / runs.CHECKPOINT_FILE
    state = torch.load(path, weights_only=True)
    _save_tagged_cuda(state, path, monkeypatch)
    # The file really names CUDA: loading without a map_location fails on this machine.
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(path, weights_only=True)

    loaded = runs.load_checkpoint(path)
    assert loaded["generator"]["net.0.weight"].device.type == "cpu"
    generator, _ = load_generator(trained)
    assert generator(torch.zeros(3, 2)).shape == (3, 2)
    resumed = Trainer(build_config(SMALL), trained, resume=True)
    assert resumed.step == 2
    resumed.run(steps=2)
    resumed.close()
    assert resumed.step == 4


@pytest.mark.parametrize("setting, value, named", [
    ("width", 32, "width"),
    ("z_dim", 3, "z_dim"),
])
def test_resume_rejects_other_architecture(trained, setting, value, named):
    with pytest.raises(ConfigError) as error:
        Trainer(build_config(dict(SMALL, **{setting: value})), trained, resume=True)
    assert error.value.field == "checkpoint"
    assert f"{named}=" in str(error.value)


def test_resume_rejects_sn_switch(trained):
    with pytest.raises(ConfigError) as error:
        Trainer(build_config(dict(SMALL, constraint="sn")), trained, resume=True)
    assert "parametrizations" in str(error.value)
    assert "sn" in str(error.value)


def test_resume_rejects_sn_checkpoint_without_sn(tmp_path):
    run_dir = tmp_path / "sn"
    trainer = Trainer(build_config(dict(SMALL, constraint="sn")), run_dir)
    trainer.run(steps=2)
    trainer.close()
    with pytest.raises(ConfigError) as error:
        Trainer(build_config(dict(SMALL, constraint="none")), run_dir, resume=True)
    assert "discriminator" in str(error.value)


def test_resume_rejects_old_spectral_norm_keys(tmp_path):
    run_dir = tmp_path / "sn"
    trainer = Trainer(build_config(dict(SMALL, constraint="sn")), run_dir)
    trainer.run(steps=2)
    trainer.close()
    # The same discriminator with the layout of the older torch.nn.utils.spectral_norm.
    state = torch.load(run_dir / runs.CHECKPOINT_FILE, weights_only=True)
    old_style = MLPDiscriminator(16, "none")
    for layer in old_style.net:
        if isinstance(layer, nn.Linear):
            nn.utils.spectral_norm(layer)
    state["discriminator"] = old_style.state_dict()
    assert "net.0.weight_orig" in state["discriminator"]
    assert "net.0.weight_u" in state["discriminator"]
    torch.save(state, run_dir / runs.CHECKPOINT_FILE)
    with pytest.raises(ConfigError) as error:
        Trainer(build_config(dict(SMALL, constraint="sn")), run_dir, resume=True)
    assert error.value.field == "checkpoint"
    assert "weight_orig" in str(error.value)


@pytest.mark.parametrize("keep", ["none", "10 bytes", "half", "all but 20 bytes"])
def test_truncated_checkpoint_rejected(trained, keep):
    path = trained / runs.CHECKPOINT_FILE
    data = path.read_bytes()
    sizes = {"none": 0, "10 bytes": 10, "half": len(data) // 2, "all but 20 bytes": len(data) - 20}
    path.write_bytes(data[:sizes[keep]])
    with pytest.raises(ConfigError) as error:
        runs.load_checkpoint(path)
    assert error.value.field == "checkpoint"
    assert "truncated" in str(error.value)
    with pytest.raises(ConfigError):
        Trainer(build_config(SMALL), trained, resume=True)
    with pytest.raises(ConfigError):
        load_generator(trained)


@pytest.mark.parametrize("state, problem", [
    (torch.ones(3), "keys 'generator' and 'config' missing"),
    ({"generator": 1, "config": {}}, "'generator' must map layer names to tensors"),
    ({"generator": {}, "config": [1, 2]}, "'config' must be a dict"),
    ({"generator": {}, "config": {}, "step": -1}, "'step' must be a whole number"),
    ({"generator": {}, "config": {}, "opt_g": {"lr": 1}}, "'opt_g' is not an optimizer state"),
    ({"generator": {}, "config": {}, "model": {"shape": "2"}}, "model 'shape'"),
])
def test_wrong_checkpoint_structure_rejected(tmp_path, state, problem):
    path = tmp_path / runs.CHECKPOINT_FILE
    torch.save(state, path)
    with pytest.raises(ConfigError) as error:
        runs.load_checkpoint(path)
    assert problem in str(error.value)


def test_resume_requires_training_keys(trained):
    path = trained / runs.CHECKPOINT_FILE
    state = torch.load(path, weights_only=True)
    del state["opt_d"]
    torch.save(state, path)
    with pytest.raises(ConfigError) as error:
        runs.load_checkpoint(path, require=runs.RESUME_KEYS)
    assert "opt_d" in str(error.value)
    assert runs.load_checkpoint(path)["step"] == 2


def test_missing_checkpoint_named(tmp_path):
    with pytest.raises(ConfigError) as error:
        runs.load_checkpoint(tmp_path / "nothing.pt")
    assert "not found" in str(error.value)


def test_resume_rejects_resized_layers(trained):
    path = trained / runs.CHECKPOINT_FILE
    state = torch.load(path, weights_only=True)
    del state["model"]
    torch.save(state, path)
    with pytest.raises(ConfigError) as error:
        Trainer(build_config(dict(SMALL, width=32)), trained, resume=True)
    assert "shape" in str(error.value)
