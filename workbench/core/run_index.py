"""List, describe, rename, delete and fork the run folders under a runs folder.

The runs panel of the window and scripts use these functions; none of them
imports Qt. A run's state comes from its status.json (see
:func:`workbench.core.runs.write_status`). A status of "running" whose process
is gone, or that has not been refreshed for ``STALE_AFTER_S`` seconds, is
reported as "failed", because the process ended without recording how.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from workbench.core import runs
from workbench.core.config import PRESET_FIELDS, TrainConfig, build_config
from workbench.core.constraints import apply_spectral_norm
from workbench.core.data.specs import default_image_shape
from workbench.core.models import (DEFAULT_IMAGE_WIDTH, DEFAULT_IMAGE_Z_DIM, DEFAULT_POINT_WIDTH,
                                   DEFAULT_POINT_Z_DIM, build_models, resolve_d_norm)
from workbench.core.validation import ConfigError

logger = logging.getLogger(__name__)

TRASH_DIR = ".trash"
# A "running" status not rewritten for this long is treated as a dead process,
# even when its process id is alive (the id may have been reused). It is ten
# heartbeats (runs.STATUS_HEARTBEAT_S), so a busy machine does not trip it.
STALE_AFTER_S = 10 * runs.STATUS_HEARTBEAT_S
# Characters that Windows, macOS or Linux reject in a file name.
_FORBIDDEN_NAME_CHARS = set('/\\:*?"<>|\0')
# Settings a fork cannot change, with the reason shown to the user.
_FORK_FIXED = {
    "data": "the sampler's position in the data set is stored in the checkpoint",
    "seed": "the checkpoint's random state continues, so a new seed would have no effect",
    "num_samples": "the fixed noise behind the sample grids is stored in the checkpoint",
}
# Maximum number of parents followed when joining metrics; the limit also ends a cycle of forks.
_MAX_FORK_DEPTH = 100


@dataclass(frozen=True)
class RunInfo:
    """Summary of one run folder, as the runs panel shows it.

    ``state`` is one of runs.RUN_STATES. ``message`` explains a failed or
    unreadable run. ``last_fid`` is the value of the latest row of fid.csv.
    """

    name: str
    path: Path
    data: str
    preset: str
    loss: str
    constraint: str
    steps_done: int
    steps_total: int
    state: str
    message: str = ""
    last_fid: float | None = None
    last_fid_step: int | None = None
    parent: Path | None = None
    parent_step: int | None = None
    modified: float = 0.0


def list_runs(runs_root: str | Path) -> list[RunInfo]:
    """Describe every run folder directly under ``runs_root``, sorted by name.

    Hidden folders (the trash, half-created runs) and folders that contain no
    run are skipped. A missing ``runs_root`` gives an empty list, and one that
    cannot be read raises ConfigError.
    """
    root = Path(runs_root)
    if not root.is_dir():
        return []
    try:
        folders = sorted(root.iterdir())
    except OSError as error:
        raise ConfigError("runs_root", f"cannot list {root}: {error.strerror or error}") from None
    infos = []
    for folder in folders:
        if folder.name.startswith(".") or not folder.is_dir() or not runs.holds_run(folder):
            continue
        infos.append(describe_run(folder))
    return infos


def describe_run(run_dir: str | Path) -> RunInfo:
    """Summarize one run folder. An unreadable config.json is reported in ``message`` instead of raised."""
    run_dir = Path(run_dir)
    config, problem = _read_config_safely(run_dir)
    steps_done = runs.last_metrics_step(run_dir / runs.METRICS_FILE) or 0
    status = runs.read_status(run_dir)
    if status is not None:
        steps_done = max(steps_done, status["step"])
    steps_total = _as_int(config.get("steps"), 0)
    state, message = run_state(status, steps_done, steps_total)
    fid_rows = runs.read_fid(run_dir)
    lineage = runs.read_parent(run_dir)
    return RunInfo(
        name=run_dir.name, path=run_dir, data=str(config.get("data", "?")),
        preset=str(config.get("preset", "?")), loss=str(config.get("loss", "?")),
        constraint=str(config.get("constraint", "?")), steps_done=steps_done, steps_total=steps_total,
        state=state, message=problem or message,
        last_fid=fid_rows[-1]["value"] if fid_rows else None,
        last_fid_step=fid_rows[-1]["step"] if fid_rows else None,
        parent=lineage[0] if lineage else None, parent_step=lineage[1] if lineage else None,
        modified=_modified_time(run_dir),
    )


def _read_config_safely(run_dir: Path) -> tuple[dict, str]:
    try:
        config = runs.read_config(run_dir)
    except (OSError, ValueError) as error:
        return {}, f"{runs.CONFIG_FILE} cannot be read: {error}"
    if not isinstance(config, dict):
        return {}, f"{runs.CONFIG_FILE} does not contain settings"
    return config, ""


def _as_int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _modified_time(run_dir: Path) -> float:
    times = []
    for name in (runs.METRICS_FILE, runs.CHECKPOINT_FILE, runs.STATUS_FILE, runs.CONFIG_FILE):
        try:
            times.append((run_dir / name).stat().st_mtime)
        except OSError:
            continue
    return max(times, default=0.0)


def run_state(status: dict | None, steps_done: int, steps_total: int,
              now: float | None = None) -> tuple[str, str]:
    """Return (state, message) for a run from its status.json contents.

    Without a status file (runs from before status files existed) the run is
    "finished" when all steps are done and "stopped" otherwise.
    """
    if status is None:
        return ("finished" if steps_total and steps_done >= steps_total else "stopped"), ""
    if status["state"] != "running":
        return status["state"], status["message"]
    now = time.time() if now is None else now
    if is_live(status, now):
        return "running", status["message"]
    return "failed", (f"the training process (pid {status['pid']} on {status['host']}) ended without "
                      f"recording a final state, for example because it was killed; resuming "
                      f"continues from the last checkpoint")


def is_live(status: dict, now: float | None = None) -> bool:
    """True when a "running" status was refreshed recently by a process that still exists.

    A process on another host cannot be checked, so there only freshness counts.
    """
    now = time.time() if now is None else now
    if status.get("state") != "running" or now - status["updated"] > STALE_AFTER_S:
        return False
    if status.get("host") not in (None, socket.gethostname()):
        return True
    return runs.pid_alive(status.get("pid"))


def _check_not_running(run_dir: Path, field: str, action: str) -> None:
    status = runs.read_status(run_dir)
    if status is not None and is_live(status):
        raise ConfigError(field, f"cannot {action} {run_dir.name}: it is training (pid {status['pid']}). "
                                 "Stop it first")


def _check_is_run(run_dir: Path, field: str) -> None:
    if not run_dir.is_dir() or run_dir.is_symlink() or not runs.holds_run(run_dir):
        raise ConfigError(field, f"{run_dir} is not a run folder (no {runs.CONFIG_FILE}, "
                                 f"{runs.METRICS_FILE} or {runs.CHECKPOINT_FILE} in it)")


def validate_run_name(name: Any) -> str:
    """Return ``name`` stripped if it can name a run folder on every platform, else raise ConfigError."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("name", f"expected a folder name, got {name!r}")
    name = name.strip()
    bad = sorted(set(name) & _FORBIDDEN_NAME_CHARS)
    if bad:
        raise ConfigError("name", f"{name!r} contains {' '.join(map(repr, bad))}, which folder names "
                                  "cannot contain; use letters, digits, '-', '_' or '.'")
    if name.startswith(".") or name.endswith("."):
        raise ConfigError("name", f"{name!r} starts or ends with '.'; hidden folders are not listed "
                                  "as runs and Windows drops a trailing dot")
    if any(ord(char) < 32 for char in name):
        raise ConfigError("name", f"{name!r} contains control characters; remove them")
    if len(name.encode("utf-8")) > 255:
        raise ConfigError("name", f"the name is {len(name.encode('utf-8'))} bytes long; use at most 255")
    return name


def rename_run(run_dir: str | Path, new_name: str) -> Path:
    """Rename a run folder within its runs folder and return the new path.

    Forks of the run in the same runs folder are updated to name the new path.

    Raises
    ------
    ConfigError
        For an invalid or taken name, a folder that is not a run, a run that
        is training, or a rename that the file system rejects.
    """
    run_dir = Path(run_dir)
    _check_is_run(run_dir, "name")
    new_name = validate_run_name(new_name)
    target = run_dir.parent / new_name
    if target.exists() or target.is_symlink():
        raise ConfigError("name", f"{target} already exists; choose another name")
    _check_not_running(run_dir, "name", "rename")
    try:
        os.rename(run_dir, target)
    except OSError as error:
        raise ConfigError("name", f"cannot rename {run_dir} to {new_name}: {error.strerror or error}") from None
    _relink_forks(run_dir, target)
    logger.info("renamed run %s to %s", run_dir, target)
    return target


def _relink_forks(old_dir: Path, new_dir: Path) -> None:
    old_absolute = old_dir.absolute()
    for folder in new_dir.parent.iterdir():
        lineage = runs.read_parent(folder) if folder.is_dir() else None
        if lineage is not None and Path(lineage[0]).absolute() == old_absolute:
            runs.write_parent(folder, new_dir, lineage[1])


def delete_run(run_dir: str | Path, permanent: bool = False) -> Path | None:
    """Move a run folder into the runs folder's .trash, or delete it when ``permanent``.

    The caller asks the user to confirm first. Returns the folder's path in the
    trash, or None when deleted permanently.

    Raises
    ------
    ConfigError
        For a folder that is not a run, a run that is training, or a move or
        deletion that the file system rejects.
    """
    run_dir = Path(run_dir)
    _check_is_run(run_dir, "run")
    _check_not_running(run_dir, "run", "delete")
    try:
        if permanent:
            shutil.rmtree(run_dir)
            logger.info("deleted run %s", run_dir)
            return None
        trash = run_dir.parent / TRASH_DIR
        trash.mkdir(exist_ok=True)
        target = _free_name(trash / run_dir.name)
        os.rename(run_dir, target)
    except OSError as error:
        raise ConfigError("run", f"cannot delete {run_dir}: {error.strerror or error}") from None
    logger.info("moved run %s to %s", run_dir, target)
    return target


def _free_name(path: Path) -> Path:
    candidate, index = path, 1
    while candidate.exists():
        index += 1
        candidate = path.with_name(f"{path.name}-{index}")
    return candidate


def expected_architecture(config: TrainConfig) -> dict[str, Any]:
    """Return the model description (z_dim, width, d_norm, shape) that ``config`` trains.

    The shape comes from the data spec without loading the data: (2,) for the
    2D mixtures, else (channels, size, size) with the data set's defaults.
    """
    default_shape = default_image_shape(config.data)
    if default_shape is None:
        shape = [2]
    else:
        channels = config.channels or default_shape[0]
        size = config.image_size or default_shape[1]
        shape = [channels, size, size]
    is_image = len(shape) == 3
    return {
        "z_dim": config.z_dim or (DEFAULT_IMAGE_Z_DIM if is_image else DEFAULT_POINT_Z_DIM),
        "width": config.width or (DEFAULT_IMAGE_WIDTH if is_image else DEFAULT_POINT_WIDTH),
        "d_norm": resolve_d_norm(config.d_norm, config.constraint, is_image),
        "shape": shape,
    }


def check_fork_compatible(state: dict, config: TrainConfig) -> None:
    """Raise ConfigError naming the setting whose model does not fit the checkpoint's weights."""
    model = state.get("model", {})
    expected = expected_architecture(config)
    fields = {"z_dim": "z_dim", "width": "width", "d_norm": "d_norm", "shape": "image_size"}
    for key, field in fields.items():
        saved = model.get(key)
        if saved is None:
            continue
        if (list(saved) if key == "shape" else saved) != expected[key]:
            hint = _shape_hint(saved, expected[key]) if key == "shape" else f"set {field} to {saved!r}"
            raise ConfigError(field, f"the checkpoint was trained with {key}={saved!r} but these settings "
                                     f"give {key}={expected[key]!r}; {hint}")
    _check_spectral_norm(state, config)
    _check_layers(state, config, expected)


def _shape_hint(saved: list, expected: list) -> str:
    if len(saved) != len(expected):
        return "a fork keeps the kind of data (2D points or images)"
    return f"set channels to {saved[0]} and image_size to {saved[1]}"


def _check_spectral_norm(state: dict, config: TrainConfig) -> None:
    keys = list(state["discriminator"]) if "discriminator" in state else list(state["generator"])
    if any(key.endswith("weight_orig") for key in keys):
        raise ConfigError("constraint", "the checkpoint's discriminator uses the old spectral norm layout of "
                                        "torch.nn.utils.spectral_norm (keys ending in weight_orig, weight_u, "
                                        "weight_v), which this version cannot load")
    has_sn = any(".parametrizations.weight." in key for key in keys)
    if has_sn != (config.constraint == "sn"):
        saved = "sn" if has_sn else "not sn"
        raise ConfigError("constraint", f"the checkpoint's discriminator was trained with constraint {saved}, "
                                        f"which changes its layers; a fork can switch among none, clip and "
                                        f"gp, but not to or from sn (got {config.constraint!r})")


def _check_layers(state: dict, config: TrainConfig, expected: dict) -> None:
    """Compare layer names and shapes with freshly built models (on the meta device: no memory)."""
    with torch.device("meta"):
        generator, discriminator = build_models(tuple(expected["shape"]), expected["z_dim"],
                                                expected["width"], expected["d_norm"])
        if config.constraint == "sn":
            apply_spectral_norm(discriminator)
    for name, module in (("generator", generator), ("discriminator", discriminator)):
        if name not in state:
            continue
        expected_shapes = {key: tuple(value.shape) for key, value in module.state_dict().items()}
        saved = {key: tuple(value.shape) for key, value in state[name].items()}
        if expected_shapes != saved:
            differing = (sorted(set(expected_shapes) ^ set(saved))
                         or sorted(key for key in saved if expected_shapes[key] != saved[key]))
            raise ConfigError("checkpoint", f"the {name} in the checkpoint does not match these settings "
                                            f"(first differing layers: {', '.join(differing[:3])}); "
                                            "keep the parent's width, z_dim and image size")


def fork_run(source_run_dir: str | Path, new_run_dir: str | Path, overrides: Mapping[str, Any]) -> Path:
    """Start a new run from another run's checkpoint, with some settings changed.

    The new folder gets config.json with the merged settings, a copy of the
    checkpoint whose optimizer settings follow ``overrides``, and parent.json
    naming the source run and the checkpoint's step. Training it means
    resuming it: ``Trainer(config, new_run_dir, resume=True)``. Changing the
    optimizer starts it with empty optimizer state.

    Raises
    ------
    ConfigError
        For an invalid setting, or one whose model does not fit the checkpoint
        (the message names it). Also for a change of data, seed or
        num_samples, a source without a checkpoint, and a ``new_run_dir`` that
        is not a new or empty folder.
    """
    source, target = Path(source_run_dir), Path(new_run_dir)
    state = runs.load_checkpoint(source / runs.CHECKPOINT_FILE, require=runs.RESUME_KEYS)
    config = _fork_config(state["config"], overrides)
    check_fork_compatible(state, config)
    runs.check_run_dir(target, resume=False, field="new_run_dir")

    forked = dict(state, config=config.to_dict())
    forked["opt_g"] = _retarget_optimizer(state["opt_g"], state["config"], config, config.lr_g)
    forked["opt_d"] = _retarget_optimizer(state["opt_d"], state["config"], config, config.lr_d)
    buffer = io.BytesIO()
    torch.save(forked, buffer)
    parent_step = int(state["step"])
    lineage = {"parent": str(source.absolute()), "parent_step": parent_step}
    status = {"state": "stopped", "step": parent_step, "message": f"forked from {source.name} at step "
              f"{parent_step}", "pid": None, "host": None, "updated": time.time()}
    runs.create_run_dir(target, config.to_dict(), files={
        runs.CHECKPOINT_FILE: buffer.getvalue(), runs.PARENT_FILE: _json_bytes(lineage),
        runs.STATUS_FILE: _json_bytes(status)})
    logger.info("forked %s at step %d into %s", source, parent_step, target)
    return target


def _json_bytes(data: dict) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")


def _fork_config(saved: Mapping[str, Any], overrides: Mapping[str, Any]) -> TrainConfig:
    """Merge the checkpoint's settings with ``overrides`` and validate them with build_config."""
    overrides = {key: value for key, value in dict(overrides).items() if value is not None}
    base = dict(saved)
    if "preset" in overrides and overrides["preset"] != base.get("preset"):
        # A new preset brings its own recipe, unless a recipe field is overridden too.
        base = {key: value for key, value in base.items() if key not in PRESET_FIELDS}
    config = build_config({**base, **overrides})
    parent = build_config(dict(saved))
    for field, reason in _FORK_FIXED.items():
        if getattr(config, field) != getattr(parent, field):
            raise ConfigError(field, f"a fork keeps the parent's {field} ({getattr(parent, field)!r}), "
                                     f"because {reason}; start a new run instead")
    return config


def _retarget_optimizer(saved: dict, saved_config: Mapping[str, Any], config: TrainConfig, lr: float) -> dict:
    """Return the optimizer state with the fork's learning rate and betas.

    torch's ``Optimizer.load_state_dict`` restores the saved hyperparameters, so
    the fork's values must be written into the saved param_groups. A different
    optimizer gets fresh param_groups and no state.
    """
    if saved_config.get("optimizer") != config.optimizer:
        template = _fresh_param_group(config, lr)
        groups = [dict(template, params=list(group["params"])) for group in saved["param_groups"]]
        return {"state": {}, "param_groups": groups}
    groups = []
    for group in saved["param_groups"]:
        group = dict(group, lr=float(lr))
        if config.optimizer == "adam":
            group["betas"] = (float(config.betas[0]), float(config.betas[1]))
        groups.append(group)
    return {"state": saved["state"], "param_groups": groups}


def _fresh_param_group(config: TrainConfig, lr: float) -> dict:
    # Built the way Trainer builds its optimizers: only lr (and betas for Adam) differ from torch's defaults.
    dummy = [torch.zeros(1, requires_grad=True)]
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(dummy, lr=float(lr), betas=(float(config.betas[0]), float(config.betas[1])))
    else:
        optimizer = torch.optim.RMSprop(dummy, lr=float(lr))
    return optimizer.state_dict()["param_groups"][0]


def load_metrics_with_parent(run_dir: str | Path) -> list[dict]:
    """Return a fork's metrics continuing its parent's: parent rows up to the fork's step, then its own.

    Chains of forks are followed. A parent that no longer exists contributes
    no rows (a warning is logged). For a run that is not a fork this is
    ``runs.read_metrics`` of its metrics.csv, or [] when it has none.
    """
    return _metrics_chain(Path(run_dir), depth=0)


def _metrics_chain(run_dir: Path, depth: int) -> list[dict]:
    path = run_dir / runs.METRICS_FILE
    rows = runs.read_metrics(path) if path.is_file() else []
    lineage = runs.read_parent(run_dir)
    if lineage is None:
        return rows
    parent, parent_step = lineage
    if depth >= _MAX_FORK_DEPTH or not parent.is_dir():
        logger.warning("metrics of %s start at step %d: its parent %s is missing or too deep",
                       run_dir, parent_step, parent)
        return [row for row in rows if row["step"] > parent_step]
    earlier = [row for row in _metrics_chain(parent, depth + 1) if row["step"] <= parent_step]
    return earlier + [row for row in rows if row["step"] > parent_step]


__all__ = ["RunInfo", "TRASH_DIR", "STALE_AFTER_S", "list_runs", "describe_run", "run_state", "is_live",
           "validate_run_name", "rename_run", "delete_run", "expected_architecture", "check_fork_compatible",
           "fork_run", "load_metrics_with_parent"]
