"""Run folders: atomic files, the metrics CSV and checkpoints.

A run folder contains ``config.json``, ``metrics.csv``, ``samples/`` and
``checkpoint.pt``, and optionally ``status.json`` (the state of the training
process), ``fid.csv`` (FID evaluations) and ``parent.json`` (the run and step
a fork started from). Every file but the two CSV logs is replaced atomically
(written to a temporary file in the same folder, synced, then renamed), so a
crash at any moment leaves either the old or the new version. The CSV logs are
appended line by line; a torn line is ignored when they are read back.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import socket
import sys
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
STATUS_FILE = "status.json"
FID_FILE = "fid.csv"
PARENT_FILE = "parent.json"
RUN_MARKERS = (CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE)

# States a training process records in status.json.
RUN_STATES = ("running", "stopped", "finished", "failed")
# Seconds between status.json rewrites while training (StatusWriter.heartbeat).
STATUS_HEARTBEAT_S = 30.0

# Columns of fid.csv, in order.
EVENTS_FILE = "events.jsonl"   # one JSON object a line: alarms and other run events
FID_COLUMNS = ("step", "value", "extractor", "n", "precision", "recall")

# Keys that Trainer needs, besides "generator" and "config", to resume from a checkpoint.
RESUME_KEYS = ("step", "discriminator", "opt_g", "opt_d", "fixed_noise", "rng_cpu", "sampler")

# Columns of metrics.csv, in order. Values that do not apply to a loss are empty.
METRIC_COLUMNS = ("step", "loss_d", "loss_g", "grad_norm_d", "grad_norm_g",
                  "d_real", "d_fake", "wasserstein", "gp", "wall_time")


class RunWriteError(OSError):
    """A file of a run folder could not be written; the previous version of the file is unchanged.

    A subclass of OSError with the original ``errno``, so handlers of OSError still catch it.
    """

    def __init__(self, path: Path, error: OSError):
        reason = error.strerror or str(error) or type(error).__name__
        message = (f"cannot write {path}: {reason}. The previous version of the file, if any, is "
                   "unchanged; free disk space or fix the folder's permissions, then resume")
        if error.errno is None:
            super().__init__(message)
        else:
            super().__init__(error.errno, message)
        self.path = Path(path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix.

    Raises
    ------
    RunWriteError
        When the temporary file cannot be created, written, synced or renamed
        (a full disk, a read-only folder). The temporary file is removed.
    """
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise RunWriteError(path, error) from error
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as error:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        if isinstance(error, OSError):
            raise RunWriteError(path, error) from error
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
    """Raise ConfigError unless ``folder`` can take a new run (or, with resume, contains one)."""
    folder = Path(folder)
    if resume:
        if not (folder / CHECKPOINT_FILE).is_file():
            raise ConfigError(field, f"cannot resume: {CHECKPOINT_FILE} not found in {folder}; "
                                     "start a new run without --resume")
        return
    if folder.exists() and not folder.is_dir():
        raise ConfigError(field, f"{folder} is a file; choose a folder for the run")
    if holds_run(folder):
        raise ConfigError(field, f"{folder} already contains a run; pass --resume to continue it "
                                 "or choose a new folder")
    if folder.is_dir() and any(folder.iterdir()):
        raise ConfigError(field, f"{folder} is not empty; choose a new or empty folder for the run")
    _check_writable_parent(folder, field)


def _check_writable_parent(folder: Path, field: str) -> None:
    """Raise ConfigError unless the folder's parent can be created and written to."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder.parent):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(field, f"cannot create the run folder {folder}: {reason}; "
                                 "choose a folder in a writable location") from None


def create_run_dir(folder: Path, config_dict: dict, files: dict[str, bytes] | None = None) -> None:
    """Create the run folder with its config.json in one rename, so it never exists half made.

    ``files`` maps further file names (such as a fork's checkpoint.pt) to their
    contents; they are written into the folder before the rename.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        (staging / SAMPLES_DIR).mkdir()
        atomic_write_json(staging / CONFIG_FILE, config_dict)
        for name, data in (files or {}).items():
            atomic_write_bytes(staging / name, data)
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


def last_metrics_step(path: Path) -> int | None:
    """Return the step of the last complete row of metrics.csv, reading only the file's end."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 4096))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    lines = tail.split("\n")[:-1]  # drop the text after the last newline: empty, or a torn line
    for line in reversed(lines):
        cells = line.split(",")
        if len(cells) == len(METRIC_COLUMNS) and cells[0].isdigit():
            return int(cells[0])
    return None


def append_fid(run_dir: Path, step: int, value: float, extractor: str, n: int,
               precision: float | None = None, recall: float | None = None) -> Path:
    """Append one FID evaluation to the run's fid.csv by rewriting the file atomically; return its path.

    A file written with the older four columns (step, value, extractor, n) is
    rewritten with empty precision and recall cells for its rows.
    """
    path = Path(run_dir) / FID_FILE
    rows = _read_fid_cells(path)
    rows.append({"step": str(int(step)), "value": repr(float(value)), "extractor": extractor, "n": str(int(n)),
                 "precision": "" if precision is None else repr(float(precision)),
                 "recall": "" if recall is None else repr(float(recall))})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, FID_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
    return path


def _read_fid_cells(path: Path) -> list[dict]:
    """Read fid.csv as strings per column, skipping a torn last line; a missing file gives []."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    lines = text.split("\n")[:-1]  # the text after the last newline may be torn
    return [{column: record.get(column) or "" for column in FID_COLUMNS}
            for record in csv.DictReader(lines) if record.get("step")]


def read_fid(run_dir: Path) -> list[dict]:
    """Read fid.csv into dicts: step (int), value (float), extractor (str), n (int),
    precision and recall (float, or None where not computed). Rows that do not parse are skipped.
    """
    rows = []
    for record in _read_fid_cells(Path(run_dir) / FID_FILE):
        try:
            rows.append({"step": int(record["step"]), "value": float(record["value"]),
                         "extractor": str(record["extractor"]), "n": int(record["n"]),
                         "precision": float(record["precision"]) if record["precision"] else None,
                         "recall": float(record["recall"]) if record["recall"] else None})
        except (TypeError, ValueError):
            continue
    return rows


def write_status(run_dir: Path, state: str, step: int, message: str = "") -> None:
    """Record the training process's state in status.json, atomically.

    The file also gets this process's id, the host name and the time, so a
    reader can tell a live run from one whose process was killed.
    """
    if state not in RUN_STATES:
        raise ValueError(f"state must be one of {', '.join(RUN_STATES)}, got {state!r}")
    status = {"state": state, "step": int(step), "message": str(message), "pid": os.getpid(),
              "host": socket.gethostname(), "updated": time.time()}
    atomic_write_json(Path(run_dir) / STATUS_FILE, status)


def read_status(run_dir: Path) -> dict | None:
    """Return the parsed status.json, or None when it is missing or invalid (a warning is logged)."""
    path = Path(run_dir) / STATUS_FILE
    try:
        with open(path, encoding="utf-8") as handle:
            status = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        logger.warning("ignoring unreadable %s: %s", path, error)
        return None
    valid = (isinstance(status, dict) and status.get("state") in RUN_STATES
             and isinstance(status.get("step"), int) and isinstance(status.get("updated"), (int, float)))
    if not valid:
        logger.warning("ignoring %s: expected the keys state, step and updated, got %r", path, status)
        return None
    status["message"] = str(status.get("message", ""))
    status.setdefault("pid", None)
    status.setdefault("host", None)
    return status


class StatusWriter:
    """Keep a run's status.json current: ``set`` on every change of state, ``heartbeat`` every step.

    ``heartbeat`` rewrites the file only when ``interval_s`` seconds have passed
    since the last write, so calling it on every step costs a clock read. The
    status is advisory, so a failed write (a full disk) is logged, not raised,
    and training goes on until a checkpoint write fails.
    """

    def __init__(self, run_dir: Path, interval_s: float = STATUS_HEARTBEAT_S):
        self.run_dir = Path(run_dir)
        self.interval_s = interval_s
        self._last_write = -math.inf
        self._failing = False

    def set(self, state: str, step: int, message: str = "") -> bool:
        """Write the status now; return False when the write failed."""
        self._last_write = time.monotonic()
        try:
            write_status(self.run_dir, state, step, message)
        except OSError as error:
            if not self._failing:  # one warning per run of failures, not one per step
                logger.warning("cannot update the run status (state %s, step %d): %s", state, step, error)
            self._failing = True
            return False
        self._failing = False
        return True

    def heartbeat(self, step: int, message: str = "") -> None:
        if time.monotonic() - self._last_write >= self.interval_s:
            self.set("running", step, message)


def pid_alive(pid: int) -> bool:
    """Return True when a process with this id exists on this machine and is not a zombie."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if sys.platform == "win32":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists but belongs to another user
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            # The state letter follows the command name, which is in parentheses.
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # without /proc (macOS) os.kill is the only check


def _windows_pid_alive(pid: int) -> bool:
    # os.kill(pid, 0) would terminate the process on Windows, so ask the kernel instead.
    # NOTE: untested on Windows; written from the Win32 OpenProcess/GetExitCodeProcess docs.
    import ctypes

    query_limited_information, still_active = 0x1000, 259
    kernel32 = ctypes.windll.kernel32
    handle = kernel32.OpenProcess(query_limited_information, False, pid)
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == still_active
    finally:
        kernel32.CloseHandle(handle)


def write_parent(run_dir: Path, parent_dir: Path, parent_step: int) -> None:
    """Record in parent.json that this run was forked from ``parent_dir`` at ``parent_step``."""
    record = {"parent": str(Path(parent_dir).absolute()), "parent_step": int(parent_step)}
    atomic_write_json(Path(run_dir) / PARENT_FILE, record)


def read_parent(run_dir: Path) -> tuple[Path, int] | None:
    """Return (parent folder, parent step) of a forked run, or None for a run that is not a fork.

    When the recorded path no longer exists but a folder of the same name sits
    next to this run (the runs folder was moved), that folder is returned.
    """
    path = Path(run_dir) / PARENT_FILE
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
        parent, step = Path(record["parent"]), int(record["parent_step"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("ignoring unreadable %s: %s", path, error)
        return None
    if not parent.exists():
        sibling = Path(run_dir).absolute().parent / parent.name
        if sibling.is_dir():
            parent = sibling
    return parent, step


def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """Delete temporary files that a killed process left in the run folder; return their paths.

    Only call this while no process trains in the folder, since its temporary
    files would be deleted mid-write.
    """
    run_dir = Path(run_dir)
    removed = []
    for folder in (run_dir, run_dir / SAMPLES_DIR):
        if not folder.is_dir():
            continue
        for path in folder.glob(".*.tmp"):
            try:
                path.unlink()
            except OSError as error:
                logger.warning("cannot remove the temporary file %s: %s", path, error)
                continue
            removed.append(path)
    if removed:
        logger.info("removed %d temporary files left by an interrupted save in %s", len(removed), run_dir)
    return removed


def save_checkpoint(path: Path, state: dict) -> None:
    """Serialize ``state`` with torch.save and replace ``path`` atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu", require: Iterable[str] = ()) -> dict:
    """Load a checkpoint with ``weights_only=True``, so a file that would run code is rejected.

    Tensors saved on a GPU are mapped to ``map_location`` (the CPU by default),
    so a checkpoint from a CUDA machine loads on one without CUDA. The keys
    "generator" and "config", the keys in ``require`` (pass RESUME_KEYS to
    resume) and the types of the known keys are checked.

    Raises
    ------
    ConfigError
        With field "checkpoint", when the file is missing, truncated, corrupt,
        contains objects other than tensors and plain values, or lacks a key.
    """
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
    missing = [key for key in require if key not in state]
    if missing:
        raise ConfigError("checkpoint", f"{path} lacks {', '.join(missing)}, which resuming needs; "
                                        "fork or evaluate the run instead of resuming it")
    problem = _checkpoint_type_problem(state)
    if problem:
        raise ConfigError("checkpoint", f"{path} is not a valid GAN Workbench checkpoint: {problem}")
    return state


def _is_tensor_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                           for k, v in value.items())


def _checkpoint_type_problem(state: dict) -> str | None:
    """Describe the first known key of a loaded checkpoint whose value has the wrong type."""
    for name in ("generator", "discriminator"):
        if name in state and not _is_tensor_dict(state[name]):
            return f"'{name}' must map layer names to tensors"
    for name in ("config", "sampler", "model", "opt_g", "opt_d"):
        if name in state and not isinstance(state[name], dict):
            return f"'{name}' must be a dict, got {type(state[name]).__name__}"
    for name in ("opt_g", "opt_d"):
        if name in state and not {"state", "param_groups"} <= set(state[name]):
            return f"'{name}' is not an optimizer state (keys 'state' and 'param_groups' missing)"
    step = state.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"'step' must be a whole number >= 0, got {step!r}"
    for name in ("fixed_noise", "rng_cpu"):
        if name in state and not isinstance(state[name], torch.Tensor):
            return f"'{name}' must be a tensor, got {type(state[name]).__name__}"
    model = state.get("model", {})
    for name in ("z_dim", "width"):
        if name in model and (isinstance(model[name], bool) or not isinstance(model[name], int)):
            return f"model '{name}' must be a whole number, got {model[name]!r}"
    shape = model.get("shape", [2])
    if not isinstance(shape, (list, tuple)) or not all(isinstance(n, int) and n > 0 for n in shape):
        return f"model 'shape' must be a list of positive whole numbers, got {shape!r}"
    return None


def read_config(run_dir: Path) -> dict:
    with open(Path(run_dir) / CONFIG_FILE, encoding="utf-8") as handle:
        return json.load(handle)


def sample_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / SAMPLES_DIR / f"step_{step:06d}.png"
