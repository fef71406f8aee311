"""The training loop that the CLI, the tests and the window all drive.

A *step* is one generator update preceded by ``n_critic`` discriminator
updates, each on its own batch. :meth:`Trainer.train_step` runs one step and
returns its metrics; :meth:`Trainer.run` loops until the configured number of
steps, honouring pause and stop requests from another thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from workbench.core import runs
from workbench.core.config import TrainConfig
from workbench.core.constraints import apply_spectral_norm, clip_parameters, gradient_penalty
from workbench.core.data import BatchSampler, load_dataset
from workbench.core.losses import LOSS_FUNCTIONS
from workbench.core.models import (DEFAULT_IMAGE_WIDTH, DEFAULT_IMAGE_Z_DIM, DEFAULT_POINT_WIDTH,
                                   DEFAULT_POINT_Z_DIM, build_models, resolve_d_norm)
from workbench.core.render import image_grid, save_png, scatter_image
from workbench.core.validation import ConfigError

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
REAL_POINTS_SHOWN = 1000
VALUE_COLUMNS = runs.METRIC_COLUMNS[1:-1]   # the per-step values between step and wall_time
FLUSH_SECONDS = 0.05                         # read metrics back from a GPU at most this long after a step
FLUSH_ROWS = 256


class NonFiniteError(RuntimeError):
    """A loss or gradient norm became NaN or infinite; the step's updates were not checkpointed."""

    def __init__(self, step: int, quantity: str, value: float):
        super().__init__(f"training stopped at step {step}: {quantity} is {value}; the last checkpoint "
                         "on disk is from before this step. Resume from it with a lower learning rate "
                         "or another constraint.")
        self.step = step
        self.quantity = quantity


def resolve_device(name: str) -> torch.device:
    """Return the torch device for ``auto``, ``cpu``, ``cuda`` or ``mps``; auto prefers CUDA, then MPS."""
    mps_ok = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "'cuda' requested but CUDA is not available on this machine; use auto or cpu")
    if name == "mps" and not mps_ok:
        raise ConfigError("device", "'mps' requested but Apple MPS is not available on this machine; use auto or cpu")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"CUDA ({torch.cuda.get_device_name(device)})"
    return {"mps": "Apple MPS", "cpu": "CPU"}.get(device.type, str(device))


def _grad_norm(module: nn.Module) -> torch.Tensor:
    """Global L2 norm of all parameter gradients of ``module`` (0 when none exist)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


class Trainer:
    """Own the data, both networks and their optimizers, and run training steps."""

    def __init__(self, config: TrainConfig, run_dir: str | Path | None = None, *, resume: bool = False,
                 download: bool = False, dataset=None, rank: int = 0, world_size: int = 1):
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.rank, self.world_size = rank, world_size
        for message in config.warnings():
            logger.warning(message)

        # Validate everything that can fail before any file is written.
        if self.run_dir is not None and rank == 0:
            runs.check_run_dir(self.run_dir, resume)
        self.device = resolve_device(config.device)
        self.dataset = dataset if dataset is not None else load_dataset(
            config.data, image_size=config.image_size or None, channels=config.channels or None, download=download)
        self.is_image = self.dataset.kind == "images"
        self.z_dim = config.z_dim or (DEFAULT_IMAGE_Z_DIM if self.is_image else DEFAULT_POINT_Z_DIM)
        self.width = config.width or (DEFAULT_IMAGE_WIDTH if self.is_image else DEFAULT_POINT_WIDTH)
        self.d_norm = resolve_d_norm(config.d_norm, config.constraint, self.is_image)
        self.sampler = BatchSampler(self.dataset, config.batch_size, seed=config.seed, rank=rank, world_size=world_size)

        # Models, optimizers and the fixed noise, all from the seed.
        torch.manual_seed(config.seed)
        self.generator, self.discriminator = build_models(tuple(self.dataset.shape), self.z_dim, self.width, self.d_norm)
        if config.constraint == "sn":
            apply_spectral_norm(self.discriminator)
        self.generator.to(self.device)
        self.discriminator.to(self.device)
        self.opt_g = self._make_optimizer(self.generator, config.lr_g)
        self.opt_d = self._make_optimizer(self.discriminator, config.lr_d)
        noise_rng = torch.Generator().manual_seed(config.seed + 1)
        self.fixed_noise = torch.randn(config.num_samples, self.z_dim, generator=noise_rng).to(self.device)
        self._real_points = None
        self.d_loss_fn, self.g_loss_fn = LOSS_FUNCTIONS[config.loss]

        self.step = 0
        self._elapsed_before = 0.0
        if resume:
            self._restore(runs.load_checkpoint(self.run_dir / runs.CHECKPOINT_FILE))
        self._start_time = time.perf_counter()
        self._stop = threading.Event()
        self._resume_event = threading.Event()
        self._resume_event.set()
        self.metrics_callbacks: list[Callable[[dict], None]] = []
        self._pending: list[tuple[int, float, torch.Tensor]] = []
        self._last_flush = time.perf_counter()
        self._metrics = None
        if self.run_dir is not None and rank == 0:
            self._open_run_dir(resume)
        logger.info("trainer ready: %s, %s loss, %s constraint, %s, step %d of %d", self.dataset_name,
                    config.loss, config.constraint, self.device_name, self.step, config.steps)

    # ----- construction helpers -------------------------------------------------

    def _make_optimizer(self, module: nn.Module, lr: float) -> torch.optim.Optimizer:
        params = module.parameters()
        if self.config.optimizer == "adam":
            betas = (float(self.config.betas[0]), float(self.config.betas[1]))
            return torch.optim.Adam(params, lr=float(lr), betas=betas)
        return torch.optim.RMSprop(params, lr=float(lr))

    def _open_run_dir(self, resume: bool) -> None:
        if resume:
            runs.atomic_write_json(self.run_dir / runs.CONFIG_FILE, self.config.to_dict())
            (self.run_dir / runs.SAMPLES_DIR).mkdir(exist_ok=True)
        else:
            runs.create_run_dir(self.run_dir, self.config.to_dict())
        self._metrics = runs.MetricsWriter(self.run_dir / runs.METRICS_FILE, keep_steps_up_to=self.step)

    @property
    def dataset_name(self) -> str:
        return getattr(self.dataset, "name", self.config.data)

    @property
    def device_name(self) -> str:
        return describe_device(self.device)

    @property
    def finished(self) -> bool:
        return self.step >= self.config.steps

    # ----- one training step ----------------------------------------------------

    def _noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.z_dim, device=self.device)

    def _real_batch(self) -> torch.Tensor:
        return self.sampler.next().to(self.device, non_blocking=True)

    def _discriminator_step(self) -> dict[str, torch.Tensor]:
        real = self._real_batch()
        with torch.no_grad():
            fake = self.generator(self._noise(real.shape[0]))
        scores_real = self.discriminator(real)
        scores_fake = self.discriminator(fake)
        loss = self.d_loss_fn(scores_real, scores_fake)
        values = {"loss_d": loss}
        if self.config.constraint == "gp":
            penalty = gradient_penalty(self.discriminator, real, fake)
            loss = loss + self.config.gp_weight * penalty
            values["gp"] = penalty
            values["loss_d"] = loss
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        values["grad_norm_d"] = _grad_norm(self.discriminator)
        self.opt_d.step()
        if self.config.loss == "bce":
            values["d_real"] = torch.sigmoid(scores_real.detach()).mean()
            values["d_fake"] = torch.sigmoid(scores_fake.detach()).mean()
        else:
            values["d_real"] = scores_real.detach().mean()
            values["d_fake"] = scores_fake.detach().mean()
        if self.config.loss == "wasserstein":
            values["wasserstein"] = values["d_real"] - values["d_fake"]
        return values

    def _generator_step(self) -> dict[str, torch.Tensor]:
        self.discriminator.requires_grad_(False)
        try:
            scores = self.discriminator(self.generator(self._noise(self.config.batch_size)))
            loss = self.g_loss_fn(scores)
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = _grad_norm(self.generator)
            self.opt_g.step()
        finally:
            self.discriminator.requires_grad_(True)
        return {"loss_g": loss.detach(), "grad_norm_g": grad_norm}

    def _update(self) -> None:
        """Run one generator step with its discriminator steps and queue its metrics on the device."""
        self.generator.train()
        self.discriminator.train()

        # Update the discriminator n_critic times, each on a fresh batch.
        for _ in range(self.config.n_critic):
            d_values = self._discriminator_step()
            # Apply the Lipschitz constraint (spectral norm acts inside D's forward).
            if self.config.constraint == "clip":
                clip_parameters(self.discriminator, self.config.clip_value)

        # Update the generator.
        g_values = self._generator_step()

        # Record metrics: stacked on the device, read back in batches by flush_metrics.
        values = {**d_values, **g_values}
        nan = torch.full((), math.nan, device=self.device)
        stacked = torch.stack([values[name].detach().float().reshape(()) if name in values else nan
                               for name in VALUE_COLUMNS])
        self.step += 1
        self._pending.append((self.step, self.elapsed, stacked))

    def train_step(self) -> dict[str, float]:
        """Run one generator step with its discriminator steps and return its metrics row."""
        self._update()
        return self.flush_metrics()[-1]

    def advance(self) -> list[dict[str, float]]:
        """Run one step; return the metrics rows read back from the device so far (often none on a GPU).

        On the CPU every step is read back at once. On a GPU rows stay on the device
        until a log, sample or checkpoint step, or 50 ms after the last read, so the
        loop does not wait for the device after every step.
        """
        self._update()
        due = (self.device.type == "cpu" or self._is_interval_step()
               or time.perf_counter() - self._last_flush > FLUSH_SECONDS or len(self._pending) >= FLUSH_ROWS)
        return self.flush_metrics() if due else []

    def _is_interval_step(self) -> bool:
        step, config = self.step, self.config
        return (step == config.steps or step % config.log_every == 0 or step % config.sample_every == 0
                or step % config.checkpoint_every == 0)

    def flush_metrics(self) -> list[dict[str, float]]:
        """Read queued metrics from the device in one transfer, check them, write and report them."""
        if not self._pending:
            return []
        values = torch.stack([item[2] for item in self._pending]).cpu().tolist()
        rows = []
        for (step, wall_time, _), row_values in zip(self._pending, values):
            row = {"step": step, **dict(zip(VALUE_COLUMNS, row_values)), "wall_time": wall_time}
            rows.append(row)
        self._pending.clear()
        self._last_flush = time.perf_counter()
        for row in rows:
            self._check_finite(row)
            self._after_step(row)
        return rows

    def _check_finite(self, row: dict) -> None:
        for name in ("loss_d", "loss_g", "grad_norm_d", "grad_norm_g", "gp"):
            value = row[name]
            if name == "gp" and self.config.constraint != "gp":
                continue
            if not math.isfinite(value):
                raise NonFiniteError(row["step"], name, value)

    def _after_step(self, row: dict) -> None:
        step = row["step"]
        if self._metrics is not None:
            self._metrics.write([row])
        for callback in self.metrics_callbacks:
            callback(row)
        if step % self.config.log_every == 0 or step == self.config.steps:
            logger.info("step %d/%d  loss_d %.4f  loss_g %.4f  |grad D| %.3g  |grad G| %.3g", step,
                        self.config.steps, row["loss_d"], row["loss_g"], row["grad_norm_d"], row["grad_norm_g"])
        # Samples and checkpoints describe the current weights, so only the newest row triggers them.
        if self.run_dir is not None and self.rank == 0 and step == self.step:
            if step % self.config.sample_every == 0 or step == self.config.steps:
                self.save_samples()
            if step % self.config.checkpoint_every == 0 or step == self.config.steps:
                self.save_checkpoint()

    @property
    def elapsed(self) -> float:
        """Seconds of training so far, including time before a resume."""
        return self._elapsed_before + (time.perf_counter() - self._start_time)

    # ----- the loop, with pause and stop from other threads --------------------

    def run(self, steps: int | None = None, progress: Callable[[dict], None] | None = None) -> None:
        """Train until ``config.steps`` (or ``steps`` more), a stop request, or an error."""
        target = self.config.steps if steps is None else min(self.config.steps, self.step + steps)
        while self.step < target and not self._stop.is_set():
            self._resume_event.wait()
            if self._stop.is_set():
                break
            rows = self.advance()
            if progress is not None and rows:
                progress(rows[-1])
        self.flush_metrics()

    def request_stop(self) -> None:
        self._stop.set()
        self._resume_event.set()

    def request_pause(self) -> None:
        self._resume_event.clear()

    def request_resume(self) -> None:
        self._resume_event.set()

    @property
    def paused(self) -> bool:
        return not self._resume_event.is_set()

    # ----- samples --------------------------------------------------------------

    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Return G(z) in eval mode, restoring G's previous mode afterwards."""
        was_training = self.generator.training
        self.generator.eval()
        try:
            return self.generator(z.to(self.device))
        finally:
            self.generator.train(was_training)

    def real_points(self, n: int = REAL_POINTS_SHOWN) -> np.ndarray:
        """Return a fixed (n, 2) sample of the real 2D data (the same on every call)."""
        if self._real_points is None or len(self._real_points) != n:
            rng = torch.Generator().manual_seed(self.config.seed + 2)
            self._real_points = self.dataset.sample(n, rng).numpy()
        return self._real_points

    def samples(self) -> np.ndarray:
        """Return G on the fixed noise: a (H, W, 3) uint8 grid for images, (N, 2) float32 points for 2D data."""
        output = self.generate(self.fixed_noise)
        if self.is_image:
            return image_grid(output)
        return output.float().cpu().numpy()

    def save_samples(self) -> Path:
        samples = self.samples()
        picture = samples if self.is_image else scatter_image(self.real_points(), samples)
        path = runs.sample_path(self.run_dir, self.step)
        save_png(picture, path)
        return path

    # ----- checkpoints ----------------------------------------------------------

    def checkpoint_state(self) -> dict:
        cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return {
            "version": CHECKPOINT_VERSION,
            "step": self.step,
            "elapsed": self.elapsed,
            "config": self.config.to_dict(),
            "model": {"z_dim": self.z_dim, "width": self.width, "d_norm": self.d_norm,
                      "shape": list(self.dataset.shape)},
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "fixed_noise": self.fixed_noise.cpu(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": cuda_states,
            "sampler": self.sampler.state_dict(),
        }

    def save_checkpoint(self, path: Path | None = None) -> Path:
        """Write the checkpoint atomically (to the run folder's checkpoint.pt by default).

        Queued metrics are checked first, so a checkpoint never holds weights from
        after a non-finite step.
        """
        if self._pending:
            self.flush_metrics()
        if path is None:
            if self.run_dir is None:
                raise ValueError("this trainer has no run folder; pass a checkpoint path")
            path = self.run_dir / runs.CHECKPOINT_FILE
        runs.save_checkpoint(Path(path), self.checkpoint_state())
        logger.debug("checkpoint saved at step %d to %s", self.step, path)
        return Path(path)

    def _restore(self, state: dict) -> None:
        check_compatible(state, self)
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.fixed_noise = state["fixed_noise"].to(self.device)
        self.step = int(state["step"])
        self._elapsed_before = float(state.get("elapsed", 0.0))
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["rng_cpu"])
        if state.get("rng_cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        logger.info("resumed from step %d", self.step)

    def close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()


def check_compatible(state: dict, trainer: Trainer) -> None:
    """Raise ConfigError naming the first mismatch between a checkpoint and the trainer's settings."""
    model = state.get("model", {})
    expected = {"z_dim": trainer.z_dim, "width": trainer.width, "d_norm": trainer.d_norm,
                "shape": list(trainer.dataset.shape)}
    for key, value in expected.items():
        if key in model and model[key] != value:
            raise ConfigError("checkpoint", f"the checkpoint was trained with {key}={model[key]!r} but the "
                                            f"settings give {key}={value!r}; use the checkpoint's value")
    for name, module in (("generator", trainer.generator), ("discriminator", trainer.discriminator)):
        saved = set(state[name])
        current = set(module.state_dict())
        if saved != current:
            missing = sorted(current - saved)[:3]
            unexpected = sorted(saved - current)[:3]
            raise ConfigError("checkpoint", f"the {name} in the checkpoint does not match the settings "
                                            f"(missing keys {missing}, unexpected keys {unexpected}); check "
                                            "the constraint (sn changes the layer keys), width and image size")
