"""Analysis computed in the training thread: 2D plane views, coverage metrics and the collapse alarm.

:class:`LiveAnalysis` runs between training steps, in the thread that owns the
trainer, and hands plain numpy results to callbacks that the training thread
turns into signals. :func:`take_snapshot` copies the generator to the CPU so
that FID, interpolation and nearest-neighbour jobs can run in their own
threads while training goes on. Nothing here touches a widget.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from workbench.core import analysis
from workbench.core.interpolate import latents_from_seed
from workbench.core.runs import CHECKPOINT_FILE, EVENTS_FILE, load_checkpoint

logger = logging.getLogger(__name__)

PLANE_LAYERS = ("heatmap", "arrows", "manifold")   # the layers computed in the training thread
VIEW_INTERVAL_S = 0.2           # plane views are recomputed at most this often while training
HEATMAP_RESOLUTION = 48         # grid points per side of the discriminator heat map
MANIFOLD_LINES = 11             # grid lines per family of the warped latent grid
MANIFOLD_POINTS = 41            # points per grid line
MANIFOLD_SPAN = 2.0             # the latent grid covers [-2, 2] in two latent dimensions
PLANE_MARGIN = 1.25             # the plane extends 25% beyond the farthest real point
DIVERSITY_POINTS = 1000         # 2D points on each side of the diversity ratio
CLASS_SAMPLES = 1000            # generated images classified for the class histogram
COVERAGE_SEED = 0               # the coverage latents are the same at every evaluation


# Messages sent to the GUI thread --------------------------------------------------------------

@dataclass(frozen=True)
class PlaneFrame:
    """The layers the 2D view draws for one step; a layer that was not requested is None.

    ``heatmap[i, j]`` is the discriminator's output at ``(xs[j], ys[i])`` of a
    grid spanning ``xlim`` and ``ylim`` with both ends included. ``arrows`` are
    the negative gradients of each generated point's generator loss, and
    ``manifold`` has shape (2, lines, points, 2): the latent grid lines mapped
    through the generator.
    """

    step: int
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    points: np.ndarray                  # (N, 2) generator output on the fixed noise
    heatmap: np.ndarray | None = None   # (H, W)
    heat_label: str = ""
    heat_is_probability: bool = False
    arrows: np.ndarray | None = None    # (N, 2)
    manifold: np.ndarray | None = None  # (2, lines, points, 2)


@dataclass(frozen=True)
class CoverageSettings:
    """How often coverage is measured and when the collapse alarm fires.

    ``warmup_steps`` keeps the alarm silent before that step, because a freshly
    initialised generator covers no mode yet. NOTE: the default of 1,000 is a
    guess; a WGAN-GP run on ring8 covered 2 of 8 modes at step 300.
    """

    every: int = 200
    threshold_modes_fraction: float = 0.5
    threshold_diversity: float = 0.5
    patience: int = 2
    warmup_steps: int = 1000
    use_classifier: bool = True


@dataclass(frozen=True)
class CoverageRecord:
    """One coverage evaluation; fields that do not apply to the data are None."""

    step: int
    covered: int | None = None          # modes (2D mixtures) or classes (labelled images) covered
    total: int | None = None
    high_quality: float | None = None   # fraction of high-quality points, or of confident images
    kl: float | None = None             # KL(generated || data) over modes or classes, in nats
    diversity: float | None = None      # mean pairwise distance relative to a real batch
    feature_space: str = ""             # "points", "domain" or "pixels"
    counts: np.ndarray | None = None    # per-mode or per-class counts
    class_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlarmRecord:
    """A collapse alarm as written to events.jsonl."""

    step: int
    metric: str
    value: float
    threshold: float
    message: str


@dataclass
class GeneratorSnapshot:
    """A CPU copy of the generator and what jobs need to use it without the trainer."""

    generator: torch.nn.Module
    z_dim: int
    fixed_noise: torch.Tensor
    step: int
    is_image: bool
    dataset: Any
    loss: str
    run_dir: Path | None


# Snapshots ------------------------------------------------------------------------------------

def take_snapshot(trainer) -> GeneratorSnapshot:
    """Copy the trainer's generator to the CPU in eval mode; call it in the training thread."""
    generator = copy.deepcopy(trainer.generator).cpu().eval()
    generator.requires_grad_(False)
    return GeneratorSnapshot(generator, int(trainer.z_dim), trainer.fixed_noise.detach().cpu().clone(),
                             int(trainer.step), bool(trainer.is_image), trainer.dataset,
                             trainer.config.loss, trainer.run_dir)


def snapshot_from_run_dir(run_dir: str | Path, load_data: bool = True) -> GeneratorSnapshot:
    """Load a run folder's checkpoint as a snapshot (the data set is loaded when ``load_data``)."""
    from workbench.core.checkpoint import load_generator
    from workbench.core.data import load_dataset

    run_dir = Path(run_dir)
    state = load_checkpoint(run_dir / CHECKPOINT_FILE, map_location="cpu")
    generator, config = load_generator(run_dir)
    dataset = None
    if load_data:
        shape = state["model"]["shape"]
        image_size = shape[1] if len(shape) == 3 else None
        channels = shape[0] if len(shape) == 3 else None
        dataset = load_dataset(config.data, image_size=image_size, channels=channels)
    return GeneratorSnapshot(generator, int(generator.z_dim), state["fixed_noise"].cpu(), int(state["step"]),
                             len(state["model"]["shape"]) == 3, dataset, config.loss, run_dir)


def images_to_uint8(images: torch.Tensor) -> np.ndarray:
    """Convert (N, C, H, W) images in [-1, 1] to (N, H, W, C) uint8, rounding as the sample grid does."""
    display = ((images.detach().float().cpu() + 1.0) / 2.0).clamp(0.0, 1.0)
    return display.mul(255.0).add(0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


# Plane views ---------------------------------------------------------------------------------

def plane_limits(real_points: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """Return square (xlim, ylim) centred on the origin that contain every real point with a margin."""
    extent = float(np.abs(real_points).max()) * PLANE_MARGIN if len(real_points) else 1.0
    extent = max(extent, 1e-3)
    return (-extent, extent), (-extent, extent)


def heatmap_label(loss: str) -> tuple[str, bool]:
    """Return the colour bar's label and whether the heat map shows a probability."""
    if loss == "bce":
        return "D(x), probability of real", True
    if loss == "wasserstein":
        return "critic value", False
    return "D(x), raw output", False


def compute_plane_frame(trainer, layers: frozenset[str], limits) -> PlaneFrame:
    """Evaluate the requested plane layers for the trainer's current networks."""
    xlim, ylim = limits
    points = trainer.generate(trainer.fixed_noise).float().cpu().numpy()   # (N, 2)
    discriminator, loss = trainer.discriminator, trainer.config.loss
    label, is_probability = heatmap_label(loss)
    heatmap = arrows = manifold = None
    if "heatmap" in layers:
        heatmap = analysis.discriminator_heatmap(discriminator, xlim, ylim, HEATMAP_RESOLUTION,
                                                 probability=is_probability)
    if "arrows" in layers:
        arrows = analysis.generator_gradient_field(discriminator, points, loss)
    if "manifold" in layers and trainer.z_dim >= 2:
        grid = analysis.latent_grid(trainer.z_dim, MANIFOLD_SPAN, MANIFOLD_LINES, MANIFOLD_POINTS)
        manifold = analysis.generator_manifold(trainer.generator, grid.to(trainer.device))
    return PlaneFrame(int(trainer.step), tuple(xlim), tuple(ylim), points, heatmap, label, is_probability,
                      arrows, manifold)


# Coverage ------------------------------------------------------------------------------------

def append_event(run_dir: Path, event: dict) -> None:
    """Append one JSON line to the run folder's events.jsonl in a single write."""
    line = json.dumps(event, sort_keys=True) + "\n"
    with open(Path(run_dir) / EVENTS_FILE, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()


class ClassifierLoader:
    """Load or train the domain classifier of an image data set in a background thread.

    Training takes seconds to minutes, so it must not hold up the training
    loop; until it is ready, coverage falls back to pixel-space diversity.
    """

    def __init__(self, dataset, cache_dir: str | Path | None = None):
        self.extractor = None
        self.error: str | None = None
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._load, args=(dataset, cache_dir),
                                        name="domain-classifier", daemon=True)
        self._thread.start()

    def _load(self, dataset, cache_dir) -> None:
        from workbench.core.fid import Cancelled, domain
        from workbench.core.fid.features import Progress

        try:
            progress = Progress(domain.training_units(dataset), None, self._cancel.is_set)
            self.extractor = domain.load_or_train(dataset, cache_dir, "cpu", progress)
        except Cancelled:
            logger.info("domain classifier training cancelled")
        except (ValueError, OSError, RuntimeError) as error:
            self.error = str(error)
            logger.warning("no domain classifier for coverage, using pixel space: %s", error)

    def close(self) -> None:
        """Cancel a training still under way and wait for the thread."""
        self._cancel.set()
        self._thread.join()


class CoverageMonitor:
    """Measure coverage and diversity every ``settings.every`` steps and drive the collapse alarm."""

    def __init__(self, trainer, cache_dir: str | Path | None = None):
        self.trainer = trainer
        self.cache_dir = cache_dir
        self.settings: CoverageSettings | None = None
        self.alarm: analysis.CollapseAlarm | None = None
        self._loader: ClassifierLoader | None = None
        self._real_batch: torch.Tensor | None = None

    def configure(self, settings: CoverageSettings) -> None:
        if settings != self.settings:
            self.settings = settings
            self.alarm = analysis.CollapseAlarm(settings.threshold_modes_fraction,
                                                settings.threshold_diversity, settings.patience)

    def due(self, step: int) -> bool:
        return self.settings is not None and step > 0 and step % self.settings.every == 0

    def evaluate(self) -> tuple[CoverageRecord, AlarmRecord | None]:
        """Measure the current generator; return the record and an alarm when it fired."""
        trainer = self.trainer
        if trainer.is_image:
            record, report = self._evaluate_images()
        else:
            record, report = self._evaluate_points()
        alarm = None
        if trainer.step >= self.settings.warmup_steps:
            event = self.alarm.update(trainer.step, report, record.diversity)
            if event is not None:
                alarm = self._record_alarm(event)
        return record, alarm

    def _evaluate_points(self):
        trainer = self.trainer
        points = analysis.generate_points(trainer.generator, trainer.z_dim, analysis.DEFAULT_NUM_SAMPLES,
                                          seed=COVERAGE_SEED)   # (2500, 2)
        real = np.asarray(trainer.real_points(), dtype=np.float64)
        diversity = analysis.diversity_ratio(points[:DIVERSITY_POINTS], real[:DIVERSITY_POINTS])
        modes = getattr(trainer.dataset, "modes", None)
        if modes is None:   # the spiral has no discrete modes
            return CoverageRecord(trainer.step, diversity=diversity, feature_space="points"), None
        report = analysis.mixture_coverage(points, modes, trainer.dataset.mode_std,
                                           getattr(trainer.dataset, "weights", None))
        record = CoverageRecord(trainer.step, report.modes_covered, report.num_modes,
                                report.high_quality_fraction, report.kl, diversity, "points", report.counts)
        return record, report

    def _evaluate_images(self):
        trainer, dataset = self.trainer, self.trainer.dataset
        extractor = self._domain_extractor()
        fake = trainer.generate(trainer.fixed_noise).float().cpu()   # (N, C, H, W) in [-1, 1]
        real = self._real_images(len(fake))
        if extractor is not None:
            fake_features, real_features, space = extractor(fake), extractor(real), "domain"
        else:
            fake_features, real_features, space = fake.flatten(1), real.flatten(1), "pixels"
        diversity = analysis.diversity_ratio(fake_features, real_features)
        if extractor is None or dataset.labels is None:
            return CoverageRecord(trainer.step, diversity=diversity, feature_space=space), None

        probabilities = self._classify(extractor)
        weights = np.bincount(dataset.labels.numpy(), minlength=probabilities.shape[1]).astype(np.float64)
        report = analysis.class_coverage(probabilities, data_class_weights=weights)
        names = tuple(dataset.class_names or [str(k) for k in range(report.num_classes)])
        record = CoverageRecord(trainer.step, report.classes_covered, report.num_classes,
                                report.confident_fraction, report.kl, diversity, space, report.counts, names)
        return record, report

    @torch.no_grad()
    def _classify(self, extractor) -> np.ndarray:
        """Return the domain classifier's class probabilities (CLASS_SAMPLES, K) for seeded latents."""
        trainer = self.trainer
        images = trainer.generate(latents_from_seed(COVERAGE_SEED, CLASS_SAMPLES, trainer.z_dim)).float().cpu()
        logits = extractor.classifier(images.to(extractor.device))
        return torch.softmax(logits, dim=1).cpu().numpy()

    def _real_images(self, count: int) -> torch.Tensor:
        if self._real_batch is None or len(self._real_batch) != count:
            images = self.trainer.dataset.images
            order = torch.randperm(len(images), generator=torch.Generator().manual_seed(COVERAGE_SEED))
            self._real_batch = images[order[:count]].float() / 127.5 - 1.0
        return self._real_batch

    def _domain_extractor(self):
        dataset = self.trainer.dataset
        if not self.settings.use_classifier or getattr(dataset, "labels", None) is None:
            return None
        if self._loader is None:
            self._loader = ClassifierLoader(dataset, self.cache_dir)
        return self._loader.extractor

    def _record_alarm(self, event) -> AlarmRecord:
        breach = event.breaches[0]
        record = AlarmRecord(event.step, breach.metric, breach.value, breach.threshold, event.message)
        run_dir = self.trainer.run_dir
        if run_dir is not None:
            append_event(run_dir, {"step": record.step, "kind": "collapse", "metric": record.metric,
                                   "value": record.value, "threshold": record.threshold,
                                   "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        return record

    def close(self) -> None:
        if self._loader is not None:
            self._loader.close()


# The training thread's side ------------------------------------------------------------------

class LiveAnalysis:
    """Run the requested views and metrics between steps and pass results to callbacks.

    Parameters
    ----------
    trainer
        The trainer; only touched from the thread that calls :meth:`after_update`.
    emit_frame, emit_coverage, emit_alarm
        Called with a :class:`PlaneFrame`, a :class:`CoverageRecord` and an
        :class:`AlarmRecord`; the training thread passes its signals' ``emit``.
    """

    def __init__(self, trainer, emit_frame: Callable, emit_coverage: Callable, emit_alarm: Callable,
                 cache_dir: str | Path | None = None):
        self.trainer = trainer
        self._emit_frame, self._emit_coverage, self._emit_alarm = emit_frame, emit_coverage, emit_alarm
        self._limits = None
        self._last_frame = -np.inf
        self._last_coverage_step = -1
        self.coverage = CoverageMonitor(trainer, cache_dir)
        self.frame_seconds = 0.0      # time spent computing plane frames, for the overhead figure
        self.coverage_seconds = 0.0

    def after_update(self, layers: frozenset[str], settings: CoverageSettings | None, force: bool = False) -> None:
        """Compute what is due: plane layers every VIEW_INTERVAL_S (or now when ``force``), coverage every K steps."""
        trainer = self.trainer
        if not trainer.is_image and layers and (force or time.monotonic() - self._last_frame >= VIEW_INTERVAL_S):
            self._send_frame(layers)
        if settings is not None:
            self.coverage.configure(settings)
            if self.coverage.due(trainer.step) and trainer.step != self._last_coverage_step:
                self._send_coverage()

    def _send_frame(self, layers: frozenset[str]) -> None:
        started = time.perf_counter()
        if self._limits is None:
            self._limits = plane_limits(np.asarray(self.trainer.real_points()))
        frame = compute_plane_frame(self.trainer, layers, self._limits)
        self.frame_seconds += time.perf_counter() - started
        self._last_frame = time.monotonic()
        self._emit_frame(frame)

    def _send_coverage(self) -> None:
        started = time.perf_counter()
        self._last_coverage_step = self.trainer.step
        record, alarm = self.coverage.evaluate()
        self.coverage_seconds += time.perf_counter() - started
        self._emit_coverage(record)
        if alarm is not None:
            self._emit_alarm(alarm)

    def close(self) -> None:
        self.coverage.close()


class SnapshotSource:
    """Where a job gets its generator: a snapshot future from the training thread, or a run folder.

    With both, the run folder's checkpoint is the fallback when the run ends
    before the training thread served the request.
    """

    POLL_S = 0.1   # how often a waiting job checks its cancel flag

    def __init__(self, future=None, run_dir: str | Path | None = None, load_data: bool = True):
        if future is None and run_dir is None:
            raise ValueError("a snapshot source needs a live run or a run folder")
        self.future = future
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.load_data = load_data

    def obtain(self, cancelled: Callable[[], bool]) -> GeneratorSnapshot:
        """Wait for the snapshot in the calling (job) thread; return None when ``cancelled()`` turns True."""
        if self.future is not None:
            while not cancelled():
                try:
                    return self.future.result(timeout=self.POLL_S)
                except TimeoutError:
                    continue
                except RuntimeError:
                    if self.run_dir is None or not (self.run_dir / CHECKPOINT_FILE).is_file():
                        raise
                    logger.info("the run ended; using the checkpoint in %s", self.run_dir)
                    break
            else:
                return None
        return snapshot_from_run_dir(self.run_dir, self.load_data)
