"""The training loop that the CLI, the tests and the window all drive.

A *step* is one generator update preceded by ``n_critic`` discriminator
updates, each on its own batch. :meth:`Trainer.train_step` runs one step and
returns its metrics; :meth:`Trainer.run` loops until the configured number of
steps, honouring pause and stop requests from another thread.

Under torchrun each process runs one Trainer with its ``rank`` and
``world_size``: gradients and metrics are averaged over the processes after
each backward pass, so a step equals one process's step on the global batch
for image data, and only rank 0 writes the run folder.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from workbench.core import distributed, runs
from workbench.core.config import TrainConfig
from workbench.core.constraints import apply_spectral_norm, clip_parameters, gradient_penalty
from workbench.core.data import BatchSampler, load_dataset
from workbench.core.losses import LOSS_FUNCTIONS
from workbench.core.models import (DEFAULT_IMAGE_WIDTH, DEFAULT_IMAGE_Z_DIM, DEFAULT_POINT_WIDTH,
                                   DEFAULT_POINT_Z_DIM, build_models, resolve_d_norm)
from workbench.core.render import image_grid, save_png, save_scatter_png
from workbench.core.validation import ConfigError

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
REAL_POINTS_SHOWN = 1000
VALUE_COLUMNS = runs.METRIC_COLUMNS[1:-1]   # the per-step values between step and wall_time
FLUSH_SECONDS = 0.05                         # queued metric rows are read back at the first step this long after the last read
FLUSH_ROWS = 256                             # or when this many rows are queued
FINITE_METRICS = ("loss_d", "loss_g", "grad_norm_d", "grad_norm_g", "gp")   # gp only under the gradient penalty
DISTRIBUTED_FLUSH_ROWS = 32                  # with several processes rows are read back every this many steps
STOP_POLL_STEPS = 10                         # processes agree on a stop request every this many steps


class NonFiniteError(RuntimeError):
    """A loss or gradient norm became NaN or infinite; the step's updates were not checkpointed."""

    def __init__(self, step: int, quantity: str, value: float):
        super().__init__(f"training stopped at step {step}: {quantity} is {value}; the last checkpoint "
                         "on disk is from before this step. Resume from it with a lower learning rate "
                         "or another constraint.")
        self.step = step
        self.quantity = quantity
        self.rows: list[dict[str, float]] = []   # the rows before it that the same flush wrote


def fused_adam_supported(device: torch.device) -> bool:
    """Return whether torch has a fused Adam kernel for ``device``.

    The trainer uses that kernel where it exists. It updates every parameter in
    one call, while the default implementation runs several small operations
    per parameter tensor, and the maths is Adam's either way. On a 2-vCPU EPYC
    with torch 2.14 it made ring8 wgan-gp steps 1.14-1.16 times faster
    (BENCHMARKS.md, engine overhead).
    """
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:   # a private helper of torch's: without it, keep the default kernels
        return False
    return device.type in _get_fused_kernels_supported_devices()


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Load ``saved`` into ``optimizer``, keeping this session's settings.

    ``Optimizer.load_state_dict`` takes every setting from the saved groups:
    the learning rate and betas, and the kernel choice (``fused``,
    ``foreach``), which depends on the device that saved the checkpoint. The
    saved moments and step counts are loaded; the settings of the optimizer as
    this session built it apply.
    """
    current = optimizer.param_groups
    if len(saved["param_groups"]) == len(current):
        groups = [{**group, **{key: value for key, value in now.items() if key != "params"}}
                  for group, now in zip(saved["param_groups"], current)]
        saved = {**saved, "param_groups": groups}
    optimizer.load_state_dict(saved)   # a different group count raises torch's own error here

    # A checkpoint saved from contiguous parameters (another device, or a version without
    # channels-last) gives contiguous moments. torch's fused CPU Adam pairs the elements of
    # a parameter and its moments by memory position, so the moments must take the
    # parameter's layout or the update goes to the wrong elements (tested).
    for parameter, state in optimizer.state.items():
        for key, value in state.items():
            if (isinstance(value, torch.Tensor) and value.shape == parameter.shape
                    and value.stride() != parameter.stride()):
                state[key] = torch.empty_like(parameter, dtype=value.dtype).copy_(value)


def loss_text(value: float) -> str:
    """Format a loss with 4 decimals for the log, without the sign of a value that rounds to zero."""
    text = f"{value:.4f}"
    return "0.0000" if text == "-0.0000" else text


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


def _grad_norm(parameters: list[nn.Parameter]) -> torch.Tensor:
    """Global L2 norm of the gradients of ``parameters`` (0 when none exist)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


class Trainer:
    """Own the data, both networks and their optimizers, and run training steps."""

    def __init__(self, config: TrainConfig, run_dir: str | Path | None = None, *, resume: bool = False,
                 download: bool = False, dataset=None, rank: int = 0, world_size: int = 1, local_rank: int = 0):
        """Set up a run; with ``world_size`` > 1, one process of a torchrun launch.

        ``rank``, ``world_size`` and ``local_rank`` place this process in the
        process group, which must be initialized already (see
        :mod:`workbench.core.distributed`). Every process builds the same
        networks from the seed and trains on its own shard of each batch; only
        rank 0 writes the run folder. A ConfigError raised by set-up on any
        process is raised on all of them.
        """
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        if rank == 0:
            for message in config.warnings():
                logger.warning(message)
        distributed.check_process_group(rank, world_size)
        self.step = 0
        self._elapsed_before = 0.0

        # Validate everything that can fail before any file is written.
        distributed.call_on_all(lambda: self._prepare(resume, download, dataset), world_size)
        self._start_time = time.perf_counter()
        self._stop = threading.Event()
        self._resume_event = threading.Event()
        self._resume_event.set()
        self.metrics_callbacks: list[Callable[[dict], None]] = []
        # Columns that must stay finite: a NaN there stops the run (see _non_finite).
        self._checked_columns = [VALUE_COLUMNS.index(name) for name in FINITE_METRICS
                                 if name != "gp" or config.constraint == "gp"]
        # (step, elapsed, values): a tensor on the device, or floats already read on a single CPU process.
        self._pending: list[tuple[int, float, torch.Tensor | list[float]]] = []
        self._last_flush = time.perf_counter()
        self._metrics = None
        self._status = None
        if self.run_dir is not None:
            distributed.call_on_all(lambda: self._open_run_dir(resume) if rank == 0 else None, world_size)
        if rank == 0:
            logger.info("trainer ready: %s, %s loss, %s constraint, %s, step %d of %d", self.dataset_name,
                        config.loss, config.constraint, self.device_name, self.step, config.steps)
            if world_size > 1:
                self._log_distributed_setup()

    # ----- construction helpers -------------------------------------------------

    def _prepare(self, resume: bool, download: bool, dataset) -> None:
        """Check the run folder, load the data, build the networks and restore a checkpoint."""
        config = self.config
        if self.run_dir is not None and self.rank == 0:
            runs.check_run_dir(self.run_dir, resume)
        if self.world_size == 1:
            self.device = resolve_device(config.device)
        else:
            self.device = distributed.select_device(config.device, self.local_rank)
        self.dataset = dataset if dataset is not None else load_dataset(
            config.data, image_size=config.image_size or None, channels=config.channels or None, download=download)
        self.is_image = self.dataset.kind == "images"
        self.z_dim = config.z_dim or (DEFAULT_IMAGE_Z_DIM if self.is_image else DEFAULT_POINT_Z_DIM)
        self.width = config.width or (DEFAULT_IMAGE_WIDTH if self.is_image else DEFAULT_POINT_WIDTH)
        self.d_norm = resolve_d_norm(config.d_norm, config.constraint, self.is_image)
        # config.json records the sizes actually built, not the 0 that selects the default.
        self.config = dataclasses.replace(config, z_dim=self.z_dim, width=self.width)
        self.sampler = BatchSampler(self.dataset, config.batch_size, seed=config.seed,
                                    rank=self.rank, world_size=self.world_size)
        self._build_networks()
        if resume:
            # NOTE: every process reads the checkpoint, so resuming on several nodes needs the
            # run folder on a file system that all of them can read.
            self._restore(runs.load_checkpoint(self.run_dir / runs.CHECKPOINT_FILE, require=runs.RESUME_KEYS))

    def _build_networks(self) -> None:
        """Build the networks, optimizers and fixed noise, all from the seed, so every process gets the same."""
        config = self.config
        # Convolutions on the CPU run faster on channels-last (NHWC) tensors. On a 2-vCPU EPYC
        # with torch 2.14 whole MNIST steps ran 1.22x (dcgan), 1.06x (wgan-gp) and 1.10x (sngan)
        # faster. On a GPU the gain depends on the card and on mixed precision, and was not measured.
        cpu_images = self.is_image and self.device.type == "cpu"
        self.memory_format = torch.channels_last if cpu_images else torch.contiguous_format
        torch.manual_seed(config.seed)
        self.generator, self.discriminator = build_models(tuple(self.dataset.shape), self.z_dim, self.width, self.d_norm)
        if config.constraint == "sn":
            apply_spectral_norm(self.discriminator)
        if self.world_size > 1:
            # BatchNorm statistics must come from the global batch to match a single process.
            distributed.convert_batchnorm(self.generator)
            distributed.convert_batchnorm(self.discriminator)
        self.generator.to(self.device)
        self.discriminator.to(self.device)
        if self.memory_format is not torch.contiguous_format:
            self.generator.to(memory_format=self.memory_format)
            self.discriminator.to(memory_format=self.memory_format)
        self.opt_g = self._make_optimizer(self.generator, config.lr_g)
        self.opt_d = self._make_optimizer(self.discriminator, config.lr_d)
        # Listed once: walking the modules for their parameters twice a step cost 1% of a ring8 step.
        self._g_parameters = list(self.generator.parameters())
        self._d_parameters = list(self.discriminator.parameters())
        noise_rng = torch.Generator().manual_seed(config.seed + 1)
        self.fixed_noise = torch.randn(config.num_samples, self.z_dim, generator=noise_rng).to(self.device)
        self._real_points = None
        self.d_loss_fn, self.g_loss_fn = LOSS_FUNCTIONS[config.loss]

    def _log_distributed_setup(self) -> None:
        config = self.config
        backend = torch.distributed.get_backend()
        logger.info("training on %d processes (%s): batch size %d per process, %d in all; learning rates "
                    "G %g, D %g as configured, not scaled with the number of processes", self.world_size,
                    backend, config.batch_size, self.sampler.global_batch_size, config.lr_g, config.lr_d)
        if not self.is_image:
            logger.info("%s is 2D toy data: each process draws its own points, so this run does not repeat "
                        "a one-process run with batch size %d", self.dataset_name, self.sampler.global_batch_size)

    def _make_optimizer(self, module: nn.Module, lr: float) -> torch.optim.Optimizer:
        params = list(module.parameters())
        if self.config.optimizer == "adam":
            betas = (float(self.config.betas[0]), float(self.config.betas[1]))
            return torch.optim.Adam(params, lr=float(lr), betas=betas, fused=fused_adam_supported(self.device))
        return torch.optim.RMSprop(params, lr=float(lr))

    def _open_run_dir(self, resume: bool) -> None:
        if resume:
            runs.remove_stale_temp_files(self.run_dir)
            runs.atomic_write_json(self.run_dir / runs.CONFIG_FILE, self.config.to_dict())
            (self.run_dir / runs.SAMPLES_DIR).mkdir(exist_ok=True)
        else:
            runs.create_run_dir(self.run_dir, self.config.to_dict())
        self._metrics = runs.MetricsWriter(self.run_dir / runs.METRICS_FILE, keep_steps_up_to=self.step)
        self._status = runs.StatusWriter(self.run_dir)
        self._status.set("stopped", self.step, "ready to train")

    def _record_state(self, state: str, message: str = "") -> None:
        if self._status is not None:
            self._status.set(state, self.step, message)

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
        """Return this process's ``n`` rows of a (world_size * n, z_dim) draw that every process makes alike."""
        return self._own_rows(torch.randn(n * self.world_size, self.z_dim, device=self.device))

    def _own_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Return this process's slice of ``rows``, which contains one equal slice per process in rank order."""
        if self.world_size == 1:
            return rows
        n = rows.shape[0] // self.world_size
        return rows[self.rank * n:(self.rank + 1) * n]

    def _real_batch(self) -> torch.Tensor:
        batch = self.sampler.next()
        if self.device.type != "cpu":
            batch = batch.to(self.device, non_blocking=True)
        if self.memory_format is not torch.contiguous_format:
            batch = batch.contiguous(memory_format=self.memory_format)
        return batch

    def _discriminator_step(self, record: bool = True) -> dict[str, torch.Tensor]:
        """Run one discriminator update; with ``record``, return its metric tensors (else {})."""
        real = self._real_batch()
        with torch.no_grad():
            fake = self.generator(self._noise(real.shape[0]))
        scores_real = self.discriminator(real)
        scores_fake = self.discriminator(fake)
        loss = self.d_loss_fn(scores_real, scores_fake)
        values = {"loss_d": loss}
        if self.config.constraint == "gp":
            eps_shape = (real.shape[0] * self.world_size,) + (1,) * (real.dim() - 1)
            eps = self._own_rows(torch.rand(eps_shape, device=self.device, dtype=real.dtype))
            penalty = gradient_penalty(self.discriminator, real, fake, eps)
            loss = loss + self.config.gp_weight * penalty
            values["gp"] = penalty
            values["loss_d"] = loss
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(self.discriminator, self.world_size)
        if record:
            values["grad_norm_d"] = _grad_norm(self._d_parameters)
        self.opt_d.step()
        if not record:
            return {}
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
            distributed.average_gradients(self.generator, self.world_size)
            grad_norm = _grad_norm(self._g_parameters)
            self.opt_g.step()
        finally:
            self.discriminator.requires_grad_(True)
        return {"loss_g": loss.detach(), "grad_norm_g": grad_norm}

    def _update(self) -> None:
        """Run one generator step with its discriminator steps and queue its metrics on the device."""
        # Setting the mode walks every submodule, so it is done only when it changed.
        if not self.generator.training:
            self.generator.train()
        if not self.discriminator.training:
            self.discriminator.train()

        # Update the discriminator n_critic times, each on a fresh batch; the last one is recorded.
        for index in range(self.config.n_critic):
            d_values = self._discriminator_step(record=index == self.config.n_critic - 1)
            # Apply the Lipschitz constraint (spectral norm acts inside D's forward).
            if self.config.constraint == "clip":
                clip_parameters(self.discriminator, self.config.clip_value)

        # Update the generator.
        g_values = self._generator_step()

        # Record metrics: stacked on the device, averaged over processes, read back in batches by
        # flush_metrics. A single CPU process reads the values now, because on the CPU that costs no
        # wait and is cheaper than stacking them (0.2% of a ring8 step).
        values = {**d_values, **g_values}
        if self.device.type == "cpu" and self.world_size == 1:
            recorded: torch.Tensor | list[float] = [values[name].item() if name in values else math.nan
                                                    for name in VALUE_COLUMNS]
        else:
            nan = torch.full((), math.nan, device=self.device)
            recorded = torch.stack([values[name].detach().float().reshape(()) if name in values else nan
                                    for name in VALUE_COLUMNS])
            recorded = distributed.average_tensor(recorded, self.world_size)
        self.step += 1
        self._pending.append((self.step, self.elapsed, recorded))
        if isinstance(recorded, list) and not all(math.isfinite(recorded[index]) for index in self._checked_columns):
            self.flush_metrics()   # raises NonFiniteError at this step, after writing the rows before it

    def update_discriminator_once(self) -> dict[str, float]:
        """Run one discriminator update (and the constraint) alone, to watch a single update.

        It is not a step: ``step`` stays, and nothing goes to metrics.csv. Returns
        the update's loss_d, grad_norm_d, d_real, d_fake and, where they apply,
        wasserstein and gp.
        """
        self.generator.train()
        self.discriminator.train()
        values = self._discriminator_step()
        if self.config.constraint == "clip":
            clip_parameters(self.discriminator, self.config.clip_value)
        return {name: float(value.detach()) for name, value in values.items()}

    def update_generator_once(self) -> dict[str, float]:
        """Run one generator update alone; like :meth:`update_discriminator_once`, it is not a step."""
        self.generator.train()
        self.discriminator.train()
        return {name: float(value.detach()) for name, value in self._generator_step().items()}

    def train_step(self) -> dict[str, float]:
        """Run one generator step with its discriminator steps and return its metrics row."""
        self._update()
        return self.flush_metrics()[-1]

    def advance(self) -> list[dict[str, float]]:
        """Run one step; return the metrics rows read back from the device so far (often none on a GPU).

        Rows stay queued until a log, sample or checkpoint step, the first step
        that ends 50 ms after the last read, or 256 queued rows. On a GPU the loop
        then does not wait for the device after every step, and on the CPU
        metrics.csv is written in batches (a non-finite value on the CPU is still
        reported at its own step). With several processes the 50 ms rule becomes a
        step count, so every process reads back, and raises NonFiniteError, at the
        same step.
        """
        self._update()
        if self.world_size == 1:
            due = (time.perf_counter() - self._last_flush > FLUSH_SECONDS or len(self._pending) >= FLUSH_ROWS)
        else:
            due = len(self._pending) >= DISTRIBUTED_FLUSH_ROWS
        due = due or self._is_interval_step()
        return self.flush_metrics() if due else []

    def _is_interval_step(self) -> bool:
        step, config = self.step, self.config
        return (step == config.steps or step % config.log_every == 0 or step % config.sample_every == 0
                or step % config.checkpoint_every == 0)

    def flush_metrics(self) -> list[dict[str, float]]:
        """Read queued metrics from the device in one transfer, check them, write and report them."""
        if not self._pending:
            return []
        if isinstance(self._pending[0][2], list):
            values = [item[2] for item in self._pending]
        else:
            values = torch.stack([item[2] for item in self._pending]).cpu().tolist()
        rows = []
        for (step, wall_time, _), row_values in zip(self._pending, values):
            row = {"step": step, **dict(zip(VALUE_COLUMNS, row_values)), "wall_time": wall_time}
            rows.append(row)
        self._pending.clear()
        self._last_flush = time.perf_counter()
        # Rows before a non-finite one are written and reported, then the error is raised.
        good, problem = rows, None
        for index, row in enumerate(rows):
            problem = self._non_finite(row)
            if problem is not None:
                good = rows[:index]
                break
        if self._metrics is not None and good:
            self._metrics.write(good)   # one write and flush for the whole batch
        for row in good:
            self._after_step(row)
        if problem is not None:
            name, value = problem
            error = NonFiniteError(rows[len(good)]["step"], name, value)
            error.rows = good
            raise error
        return rows

    def flush_after_error(self, error: BaseException) -> list[dict[str, float]]:
        """Write and return the queued rows of steps that completed before ``error``.

        Rows stay queued between reads (see :meth:`advance`), so without this a
        failure would drop the last steps from metrics.csv. A NonFiniteError was
        raised by the flush itself, which already wrote the rows before the bad
        one, so they are returned from the error. A second failure while flushing
        is logged, not raised, so the first error stays the one reported.
        """
        if isinstance(error, NonFiniteError):
            return error.rows
        try:
            return self.flush_metrics()
        except Exception as flush_error:
            logger.warning("could not write the metrics queued before the failure: %s", flush_error)
            return []

    def _non_finite(self, row: dict) -> tuple[str, float] | None:
        """Return the first (metric, value) of ``row`` that is not finite, or None."""
        for name in FINITE_METRICS:
            value = row[name]
            if name == "gp" and self.config.constraint != "gp":
                continue
            if not math.isfinite(value):
                return name, value
        return None

    def _after_step(self, row: dict) -> None:
        step = row["step"]
        if self._status is not None:
            self._status.heartbeat(step)
        for callback in self.metrics_callbacks:
            callback(row)
        if step % self.config.log_every == 0 or step == self.config.steps:
            logger.info("step %d/%d  loss_d %s  loss_g %s  |grad D| %.3g  |grad G| %.3g", step,
                        self.config.steps, loss_text(row["loss_d"]), loss_text(row["loss_g"]),
                        row["grad_norm_d"], row["grad_norm_g"])
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
        self._record_state("running")
        try:
            while self.step < target and not self._stop_agreed():
                if not self._resume_event.is_set():
                    # Write the queued rows before waiting, so metrics.csv is complete during a pause.
                    rows = self.flush_metrics()
                    if progress is not None and rows:
                        progress(rows[-1])
                # A paused run keeps its status fresh, so the runs list does not report it as dead.
                while not self._resume_event.wait(timeout=runs.STATUS_HEARTBEAT_S):
                    if self._status is not None:
                        self._status.heartbeat(self.step, "paused")
                if self.world_size == 1 and self._stop.is_set():
                    break
                rows = self.advance()
                if progress is not None and rows:
                    progress(rows[-1])
            self.flush_metrics()
        except BaseException as error:
            self.flush_after_error(error)
            self._record_state("failed", str(error) or type(error).__name__)
            raise
        if self.finished:
            self._record_state("finished")
        else:
            self._record_state("stopped", "stopped by request" if self._stop.is_set() else "")

    def _stop_agreed(self) -> bool:
        """Return whether to stop now. Several processes agree every STOP_POLL_STEPS steps, so all stop together."""
        if self.world_size == 1:
            return self._stop.is_set()
        if self.step % STOP_POLL_STEPS != 0:
            return False
        return distributed.any_process(self._stop.is_set(), self.device)

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
        path = runs.sample_path(self.run_dir, self.step)
        if self.is_image:
            save_png(samples, path)
        else:
            save_scatter_png(self.real_points(), samples, path)
        return path

    # ----- checkpoints ----------------------------------------------------------

    def checkpoint_state(self) -> dict:
        cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        # Each process draws from the generator of its own GPU, so that state is kept apart.
        device_state = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
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
            "rng_cuda_device": device_state,
            "sampler": self.sampler.state_dict(),
            "world_size": self.world_size,
            "global_batch_size": self.config.batch_size * self.world_size,
        }

    def save_checkpoint(self, path: Path | None = None) -> Path | None:
        """Write the checkpoint atomically (to the run folder's checkpoint.pt by default).

        Queued metrics are checked first, so a checkpoint never contains weights from
        after a non-finite step. Processes other than rank 0 only check them,
        write nothing and return ``path``.
        """
        if self._pending:
            self.flush_metrics()
        if self.rank != 0:
            return None if path is None else Path(path)
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
        saved_optimizer = state.get("config", {}).get("optimizer", self.config.optimizer)
        if saved_optimizer == self.config.optimizer:
            load_optimizer_state(self.opt_g, state["opt_g"])
            load_optimizer_state(self.opt_d, state["opt_d"])
        elif self.rank == 0:
            # Adam's moments mean nothing to RMSprop and the other way round, as in a fork.
            logger.info("the checkpoint was trained with %s; %s starts with empty state at step %s",
                        saved_optimizer, self.config.optimizer, state["step"])
        self.fixed_noise = state["fixed_noise"].to(self.device)
        self.step = int(state["step"])
        self._elapsed_before = float(state.get("elapsed", 0.0))
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["rng_cpu"])
        if state.get("rng_cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        if state.get("rng_cuda_device") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda_device"], self.device)
        if self.rank == 0:
            logger.info("resumed from step %d", self.step)
            self._log_batch_change(state)

    def _log_batch_change(self, state: dict) -> None:
        saved = state.get("global_batch_size")
        current = self.config.batch_size * self.world_size
        if saved is not None and saved != current:
            logger.info("the checkpoint was trained with a global batch of %d over %d processes; this run uses %d "
                        "over %d, so it does not repeat an uninterrupted run", saved,
                        state.get("world_size", 1), current, self.world_size)

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
        saved = {key: tuple(value.shape) for key, value in state[name].items()}
        current = {key: tuple(value.shape) for key, value in module.state_dict().items()}
        if any(key.endswith("weight_orig") for key in saved):
            raise ConfigError("checkpoint", f"the {name} in the checkpoint uses the old layout of "
                                            "torch.nn.utils.spectral_norm (weight_orig, weight_u, weight_v), "
                                            "which this version cannot load")
        if set(saved) != set(current):
            missing = sorted(set(current) - set(saved))[:3]
            unexpected = sorted(set(saved) - set(current))[:3]
            raise ConfigError("checkpoint", f"the {name} in the checkpoint does not match the settings "
                                            f"(missing keys {missing}, unexpected keys {unexpected}); check "
                                            "the constraint (sn changes the layer keys), width and image size")
        resized = [key for key in current if saved[key] != current[key]]
        if resized:
            key = resized[0]
            raise ConfigError("checkpoint", f"the {name} in the checkpoint has {key} of shape {saved[key]}, "
                                            f"but the settings give {current[key]}; check width, z_dim and "
                                            "image size")
