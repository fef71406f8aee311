"""Load a trained generator from a run folder, for FID, interpolation and the runs panel."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from workbench.core import runs
from workbench.core.config import TrainConfig, config_from_dict
from workbench.core.models import build_models


def load_generator(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig]:
    """Load the generator of a run folder's checkpoint in eval mode, with the run's config."""
    state = runs.load_checkpoint(Path(run_dir) / runs.CHECKPOINT_FILE, map_location="cpu")
    config = config_from_dict(state["config"])
    model = state["model"]
    shape = tuple(model["shape"])
    generator, _ = build_models(shape, model["z_dim"], model["width"], model["d_norm"])
    generator.load_state_dict(state["generator"])
    generator.z_dim = model["z_dim"]
    return generator.to(device).eval(), config
