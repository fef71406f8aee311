"""Export a run's metrics, sample grids, training progress and settings to files of the user's choice.

Every export is written atomically, so an interrupted export never leaves a
half-written file in place of an older one. Problems with the destination
raise ConfigError with field "dest"; a run folder that lacks what is asked
for raises ConfigError with field "run".
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import tomli_w
from PIL import Image, ImageDraw

from workbench.core import runs
from workbench.core.config import TrainConfig, config_from_dict
from workbench.core.validation import ConfigError

logger = logging.getLogger(__name__)

_SAMPLE_NAME = re.compile(r"step_(\d+)\.png")
# Height in pixels of the band under each GIF frame that shows the step.
_LABEL_BAND = 14
# GIF frame durations are stored in hundredths of a second.
_MIN_FRAME_MS = 20


def _write(dest: str | Path, data: bytes) -> Path:
    dest = Path(dest)
    if dest.is_dir():
        raise ConfigError("dest", f"{dest} is a folder; give a file name")
    if not dest.parent.is_dir():
        raise ConfigError("dest", f"the folder {dest.parent} does not exist; create it or choose another")
    try:
        runs.atomic_write_bytes(dest, data)
    except OSError as error:
        raise ConfigError("dest", str(error)) from None
    logger.info("exported %s (%d bytes)", dest, len(data))
    return dest


def export_metrics_csv(run_dir: str | Path, dest: str | Path) -> Path:
    """Copy the run's metrics.csv to ``dest`` and return ``dest``."""
    source = Path(run_dir) / runs.METRICS_FILE
    try:
        data = source.read_bytes()
    except OSError as error:
        raise ConfigError("run", f"cannot read {source}: {error.strerror or error}") from None
    return _write(dest, data)


def list_samples(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Return (step, path) of the run's sample grids, in step order."""
    folder = Path(run_dir) / runs.SAMPLES_DIR
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _SAMPLE_NAME.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def export_sample_png(run_dir: str | Path, dest: str | Path, step: int | None = None) -> Path:
    """Copy the sample grid of ``step`` (the latest when None) to ``dest`` and return ``dest``."""
    samples = dict(list_samples(run_dir))
    if not samples:
        raise ConfigError("run", f"{run_dir} contains no sample grids yet")
    if step is None:
        step = max(samples)
    if step not in samples:
        raise ConfigError("step", f"no sample grid for step {step}; steps with grids: "
                                  f"{_describe_steps(sorted(samples))}")
    return _write(dest, samples[step].read_bytes())


def _describe_steps(steps: list[int]) -> str:
    if len(steps) <= 6:
        return ", ".join(map(str, steps))
    return f"{', '.join(map(str, steps[:3]))}, ..., {', '.join(map(str, steps[-3:]))}"


def export_progress_gif(run_dir: str | Path, dest: str | Path, frame_ms: int = 200,
                        max_frames: int = 100, label: bool = True) -> Path:
    """Write the run's sample grids, in step order, as an animated GIF that loops.

    At most ``max_frames`` grids are used, spread evenly over the steps, always
    with the first and the last. Each frame shows its step in a band below the
    grid when ``label`` is true. Unreadable grids are skipped with a warning.
    """
    if not isinstance(max_frames, int) or max_frames < 1:
        raise ConfigError("max_frames", f"must be a whole number >= 1, got {max_frames!r}")
    if not isinstance(frame_ms, int) or frame_ms < _MIN_FRAME_MS:
        raise ConfigError("frame_ms", f"must be a whole number of milliseconds >= {_MIN_FRAME_MS}, got {frame_ms!r}")
    chosen = _spread(list_samples(run_dir), max_frames)
    frames = [frame for frame in (_load_frame(step, path, label) for step, path in chosen) if frame is not None]
    if not frames:
        raise ConfigError("run", f"{run_dir} contains no readable sample grids yet")
    size = frames[0].size
    frames = [frame if frame.size == size else frame.resize(size, Image.Resampling.BICUBIC) for frame in frames]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms,
                   loop=0, optimize=False)
    return _write(dest, buffer.getvalue())


def _spread(items: list, count: int) -> list:
    """Pick ``count`` items evenly spaced over ``items``, keeping the first and the last."""
    if len(items) <= count:
        return items
    if count == 1:
        return items[-1:]
    indices = sorted({round(i * (len(items) - 1) / (count - 1)) for i in range(count)})
    return [items[i] for i in indices]


def _load_frame(step: int, path: Path, label: bool) -> Image.Image | None:
    try:
        with Image.open(path) as image:
            frame = image.convert("RGB")
    except (OSError, ValueError) as error:
        logger.warning("skipping the sample grid %s in the GIF: %s", path, error)
        return None
    if not label:
        return frame
    labelled = Image.new("RGB", (frame.width, frame.height + _LABEL_BAND), (255, 255, 255))
    labelled.paste(frame, (0, 0))
    ImageDraw.Draw(labelled).text((3, frame.height + 2), f"step {step}", fill=(0, 0, 0))
    return labelled


def config_to_toml(config: TrainConfig) -> str:
    """Return ``config`` as TOML text that ``gan-workbench train --config FILE`` reads back unchanged."""
    header = ("# GAN Workbench training settings. Train with:\n"
              "#   gan-workbench train --config THIS_FILE --out RUN_DIR\n"
              "# Options given on the command line override the values here.\n")
    return header + tomli_w.dumps(config.to_dict())


def export_config_toml(source: TrainConfig | str | Path, dest: str | Path) -> Path:
    """Write the settings of a config, or of a run folder's config.json, as TOML to ``dest``."""
    if isinstance(source, TrainConfig):
        config = source
    else:
        try:
            saved = runs.read_config(Path(source))
        except (OSError, ValueError) as error:
            raise ConfigError("run", f"cannot read the settings of {source}: {error}") from None
        if not isinstance(saved, dict):
            raise ConfigError("run", f"{Path(source) / runs.CONFIG_FILE} does not contain settings")
        config = config_from_dict(saved)
    return _write(dest, config_to_toml(config).encode("utf-8"))
