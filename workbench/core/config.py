"""Training configuration: one dataclass, the published presets and validation.

:func:`build_config` is the only way front ends (CLI, config files, window)
turn user input into a :class:`TrainConfig`. Every value passes through the
coercers in :mod:`workbench.core.validation`, so the messages match everywhere.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Mapping

from workbench.core.validation import ConfigError, coerce_choice, coerce_float, coerce_int

logger = logging.getLogger(__name__)

LOSSES = ("bce", "wasserstein", "hinge", "lsgan")
CONSTRAINTS = ("none", "clip", "gp", "sn")
OPTIMIZERS = ("adam", "rmsprop")
DEVICES = ("auto", "cpu", "cuda", "mps")
D_NORMS = ("auto", "batch", "layer", "none")
IMAGE_SIZES = (28, 32, 64)

# The published recipes. Each value can be overridden after the preset is applied.
PRESETS: dict[str, dict[str, Any]] = {
    # Radford et al. 2016, DCGAN.
    "dcgan": dict(loss="bce", constraint="none", optimizer="adam", lr_g=2e-4, lr_d=2e-4,
                  betas=(0.5, 0.999), n_critic=1),
    # Arjovsky et al. 2017, WGAN with weight clipping.
    "wgan": dict(loss="wasserstein", constraint="clip", clip_value=0.01, optimizer="rmsprop",
                 lr_g=5e-5, lr_d=5e-5, n_critic=5),
    # Gulrajani et al. 2017, WGAN-GP.
    "wgan-gp": dict(loss="wasserstein", constraint="gp", gp_weight=10.0, optimizer="adam",
                    lr_g=1e-4, lr_d=1e-4, betas=(0.0, 0.9), n_critic=5),
    # Miyato et al. 2018, SNGAN with the hinge loss.
    "sngan": dict(loss="hinge", constraint="sn", optimizer="adam", lr_g=2e-4, lr_d=2e-4,
                  betas=(0.0, 0.9), n_critic=5),
}

# Fields a preset sets; editing one of them in a form marks the preset as modified.
PRESET_FIELDS = ("loss", "constraint", "optimizer", "lr_g", "lr_d", "betas", "n_critic",
                 "clip_value", "gp_weight")


@dataclass
class TrainConfig:
    """Every setting of a training run; ``build_config`` fills and validates it."""

    data: str = "ring8"
    preset: str = "custom"
    loss: str = "bce"
    constraint: str = "none"
    steps: int = 2000
    batch_size: int = 64
    n_critic: int = 1
    optimizer: str = "adam"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    clip_value: float = 0.01
    gp_weight: float = 10.0
    z_dim: int = 0            # 0 picks the default for the data: 2 for points, 64 for images
    width: int = 0            # 0 picks the default: 128 hidden units for points, 32 channels for images
    d_norm: str = "auto"      # discriminator normalization; auto avoids BatchNorm under gp
    image_size: int = 0       # 0 keeps the data set's own size (28 MNIST, 32 CIFAR-10 and folders)
    channels: int = 0         # 0 keeps the data set's own channel count
    seed: int = 0
    device: str = "auto"
    sample_every: int = 100   # steps between sample grids written to the run folder
    checkpoint_every: int = 500
    log_every: int = 100      # steps between summary lines
    num_samples: int = 64     # size of the fixed noise batch shown as samples

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data

    def warnings(self) -> list[str]:
        """Return the combinations that run but break a critic's assumptions."""
        messages = []
        if self.loss == "wasserstein" and self.constraint == "none":
            messages.append(
                "loss 'wasserstein' with constraint 'none': the critic is not Lipschitz-bounded, "
                "so its outputs and the loss can grow without limit; use clip, gp or sn"
            )
        return messages


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TrainConfig))


def _validate_betas(value: Any) -> tuple[float, float]:
    original = value
    if isinstance(value, str):
        # "0.5, 0.999", "0.5 0.999" and Python's "(0.5, 0.999)" or "[0.5, 0.999]" all read as two numbers.
        value = value.strip().strip("()[]").replace(",", " ").split()
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        if isinstance(original, (list, tuple)):
            original = ", ".join(str(item) for item in original)
        count = len(value) if isinstance(value, (list, tuple)) else 1
        raise ConfigError("betas", f"'{original}' has {count} number{'' if count == 1 else 's'}; write two, "
                                   f"B1 and B2, such as '0.5, 0.999'")
    b1 = coerce_float("betas", value[0], minimum=0.0)
    b2 = coerce_float("betas", value[1], minimum=0.0)
    for b in (b1, b2):
        if b >= 1.0:
            raise ConfigError("betas", f"each beta must be in [0, 1), got {b:g}")
    return (b1, b2)


def _validate_data(value: Any) -> str:
    from workbench.core.data import parse_data_spec

    if not isinstance(value, str):
        raise ConfigError("data", f"expected a data spec such as 'ring8' or 'mnist:PATH', got {value!r}")
    return str(parse_data_spec(value, field="data"))


def _validate_preset(value: Any) -> str:
    return coerce_choice("preset", value, ("custom", *PRESETS))


def _validate_image_size(value: Any) -> int:
    size = coerce_int("image_size", value, minimum=0)
    if size not in (0, *IMAGE_SIZES):
        raise ConfigError("image_size", f"must be one of {', '.join(map(str, IMAGE_SIZES))} (or 0 for the data set's size), got {size}")
    return size


def _validate_channels(value: Any) -> int:
    channels = coerce_int("channels", value, minimum=0)
    if channels not in (0, 1, 3):
        raise ConfigError("channels", f"must be 1 (grayscale) or 3 (RGB), or 0 for the data set's own, got {channels}")
    return channels


# One validator per field: each returns the coerced value or raises ConfigError.
VALIDATORS = {
    "data": _validate_data,
    "preset": _validate_preset,
    "loss": lambda v: coerce_choice("loss", v, LOSSES),
    "constraint": lambda v: coerce_choice("constraint", v, CONSTRAINTS),
    "steps": lambda v: coerce_int("steps", v, minimum=1),
    "batch_size": lambda v: coerce_int("batch_size", v, minimum=1, maximum=65536),
    "n_critic": lambda v: coerce_int("n_critic", v, minimum=1, maximum=100),
    "optimizer": lambda v: coerce_choice("optimizer", v, OPTIMIZERS),
    "lr_g": lambda v: coerce_float("lr_g", v, minimum=0.0, maximum=1.0, exclusive_minimum=True),
    "lr_d": lambda v: coerce_float("lr_d", v, minimum=0.0, maximum=1.0, exclusive_minimum=True),
    "betas": _validate_betas,
    "clip_value": lambda v: coerce_float("clip_value", v, minimum=0.0, exclusive_minimum=True),
    "gp_weight": lambda v: coerce_float("gp_weight", v, minimum=0.0, exclusive_minimum=True),
    "z_dim": lambda v: coerce_int("z_dim", v, minimum=0, maximum=4096),
    "width": lambda v: coerce_int("width", v, minimum=0, maximum=4096),
    "d_norm": lambda v: coerce_choice("d_norm", v, D_NORMS),
    "image_size": _validate_image_size,
    "channels": _validate_channels,
    "seed": lambda v: coerce_int("seed", v, minimum=0, maximum=2**63 - 1),
    "device": lambda v: coerce_choice("device", v, DEVICES),
    "sample_every": lambda v: coerce_int("sample_every", v, minimum=1),
    "checkpoint_every": lambda v: coerce_int("checkpoint_every", v, minimum=1),
    "log_every": lambda v: coerce_int("log_every", v, minimum=1),
    "num_samples": lambda v: coerce_int("num_samples", v, minimum=1, maximum=1024),
}


def validate_field(name: str, value: Any) -> Any:
    """Return ``value`` coerced for the field ``name`` or raise ConfigError."""
    if name not in VALIDATORS:
        raise ConfigError(name, f"unknown setting; known settings are {', '.join(FIELD_NAMES)}")
    return VALIDATORS[name](value)


def build_config(values: Mapping[str, Any] | None = None, preset: str | None = None) -> TrainConfig:
    """Build a validated config: defaults, then the preset, then ``values``.

    ``preset`` may also be given as ``values["preset"]``. Values equal to None are
    ignored, so argparse namespaces with unset options can be passed directly.
    """
    values = {k: v for k, v in dict(values or {}).items() if v is not None}
    preset = preset if preset is not None else values.pop("preset", "custom")
    values.pop("preset", None)
    preset = _validate_preset(preset)

    merged: dict[str, Any] = {}
    if preset != "custom":
        merged.update(PRESETS[preset])
    merged.update(values)

    config = TrainConfig(preset=preset)
    for name, value in merged.items():
        setattr(config, name, validate_field(name, value))
    check_consistency(config)
    return config


def check_consistency(config: TrainConfig) -> None:
    """Raise ConfigError for combinations that cannot train correctly."""
    if config.constraint == "gp" and config.d_norm == "batch":
        raise ConfigError(
            "d_norm",
            "BatchNorm in the discriminator is invalid with the gradient penalty, because the penalty "
            "is defined per sample and BatchNorm mixes samples; use 'layer', 'none' or 'auto'",
        )
    if config.constraint == "clip" and config.clip_value > 10:
        raise ConfigError("clip_value", f"a clipping bound of {config.clip_value:g} does not constrain the critic; use a small value such as 0.01")


def config_from_dict(data: Mapping[str, Any]) -> TrainConfig:
    """Rebuild a config saved with ``to_dict`` (for example from config.json)."""
    return build_config({k: v for k, v in data.items() if k != "preset"}, preset=data.get("preset", "custom"))


def describe_preset(config: TrainConfig) -> str:
    """Return the preset name, with ' (modified)' when a preset field differs from it."""
    if config.preset == "custom":
        return "custom"
    for name, value in PRESETS[config.preset].items():
        current = getattr(config, name)
        if name == "betas":
            current, value = tuple(current), tuple(value)
        if current != value:
            return f"{config.preset} (modified)"
    return config.preset
