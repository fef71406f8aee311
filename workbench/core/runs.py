"""Run folders: atomic files, the metrics CSV and checkpoints.

A run folder holds ``config.json``, ``metrics.csv``, ``samples/`` and
``checkpoint.pt``. Every file but the metrics log is replaced atomically
(written to a temporary file in the same folder, synced, then renamed), so a
crash at any moment leaves either the old or the new version. The metrics log
is appended line by line; a torn last line is ignored when it is read back.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import torch

from workbench.core.validation import ConfigError

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT_FILE = "checkpoint.pt"
SAMPLES_DIR = "samples"
RUN_MARKERS = (CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE)

# Columns of metrics.csv, in order. Values that do not apply to a loss are empty.
METRIC_COLUMNS = ("step", "loss_d", "loss_g", "grad_norm_d", "grad_norm_g",
                  "d_real", "d_fake", "wasserstein", "gp", "wall_time")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode("utf-8"))


def holds_run(folder: Path) -> bool:
    return any((Path(folder) / name).exists() for name in RUN_MARKERS)


def check_run_dir(folder: Path, resume: bool, field: str = "out") -> None:
    """Raise ConfigError unless ``folder`` can hold a new run (or, with resume, holds one)."""
    folder = Path(folder)
    if resume:
        if not (folder / CHECKPOINT_FILE).is_file():
            raise ConfigError(field, f"cannot resume: {folder} holds no {CHECKPOINT_FILE}; "
                                     "start a new run without --resume")
        return
    if folder.exists() and not folder.is_dir():
        raise ConfigError(field, f"{folder} is a file; choose a folder for the run")
    if holds_run(folder):
        raise ConfigError(field, f"{folder} already holds a run; pass --resume to continue it "
                                 "or choose a new folder")
    if folder.is_dir() and any(folder.iterdir()):
        raise ConfigError(field, f"{folder} is not empty; choose a new or empty folder for the run")


def create_run_dir(folder: Path, config_dict: dict) -> None:
    """Create the run folder with its config.json in one rename, so it never exists half made."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        (staging / SAMPLES_DIR).mkdir()
        atomic_write_json(staging / CONFIG_FILE, config_dict)
        if folder.is_dir():
            folder.rmdir()  # an empty folder the user made for the run
        os.replace(staging, folder)
    except BaseException:
        for child in sorted(staging.rglob("*"), reverse=True):
            child.rmdir() if child.is_dir() else child.unlink()
        staging.rmdir()
        raise
    _fsync_dir(folder.parent)


def new_run_dir(runs_root: Path, config) -> Path:
    """Return a fresh folder name under ``runs_root``: <timestamp>-<preset>-<data>."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    data_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", config.data.split(":", 1)[0])
    base = Path(runs_root) / f"{stamp}-{config.preset}-{data_name}"
    candidate, index = base, 1
    while candidate.exists():
        index += 1
        candidate = base.with_name(f"{base.name}-{index}")
    return candidate


class MetricsWriter:
    """Append-only writer of metrics.csv, one flushed line per row."""

    def __init__(self, path: Path, keep_steps_up_to: int | None = None):
        self.path = Path(path)
        if keep_steps_up_to is not None and self.path.exists():
            self._truncate_after(keep_steps_up_to)
        is_new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        if is_new:
            self._file.write(",".join(METRIC_COLUMNS) + "\n")
            self._file.flush()

    def _truncate_after(self, step: int) -> None:
        """Drop rows after ``step`` (and a torn last line), so a resumed run continues cleanly."""
        rows = read_metrics(self.path)
        kept = [row for row in rows if row["step"] <= step]
        buffer = io.StringIO()
        buffer.write(",".join(METRIC_COLUMNS) + "\n")
        for row in kept:
            buffer.write(_format_row(row) + "\n")
        atomic_write_bytes(self.path, buffer.getvalue().encode("utf-8"))

    def write(self, rows: Iterable[dict]) -> None:
        for row in rows:
            self._file.write(_format_row(row) + "\n")
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def _format_row(row: dict) -> str:
    cells = []
    for name in METRIC_COLUMNS:
        value = row.get(name, math.nan)
        if name == "step":
            cells.append(str(int(value)))
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            cells.append("")
        else:
            cells.append(repr(float(value)))
    return ",".join(cells)


def read_metrics(path: Path) -> list[dict]:
    """Read metrics.csv into dicts of floats (NaN for empty cells), skipping a torn last line."""
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        text = handle.read()
    lines = text.split("\n")
    if lines and lines[-1] != "":
        lines = lines[:-1]  # no trailing newline: the last line may be torn by a crash
    reader = csv.reader(line for line in lines if line)
    header = next(reader, None)
    if header is None:
        return rows
    for cells in reader:
        if len(cells) != len(header):
            continue
        try:
            row = {name: (float(cell) if cell != "" else math.nan) for name, cell in zip(header, cells)}
        except ValueError:
            continue
        row["step"] = int(row["step"])
        rows.append(row)
    return rows


def save_checkpoint(path: Path, state: dict) -> None:
    """Serialize ``state`` with torch.save and replace ``path`` atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``, so a file that would run code is rejected."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("checkpoint", f"{path} not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError or EOFError here
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError("checkpoint", f"cannot load {path}: the file is truncated, corrupt or contains "
                                        f"objects other than tensors and plain values ({reason})") from None
    if not isinstance(state, dict) or "generator" not in state or "config" not in state:
        raise ConfigError("checkpoint", f"{path} is not a GAN Workbench checkpoint (keys 'generator' and 'config' missing)")
    return state


def read_config(run_dir: Path) -> dict:
    with open(Path(run_dir) / CONFIG_FILE, encoding="utf-8") as handle:
        return json.load(handle)


def sample_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / SAMPLES_DIR / f"step_{step:06d}.png"
