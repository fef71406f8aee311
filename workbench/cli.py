"""Command line: ``gan-workbench train``, ``gan-workbench fid`` and, with no command, the window."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from workbench import __version__
from workbench.core.fields import FIELDS
from workbench.core.validation import ConfigError

logger = logging.getLogger("workbench")

# Options of `train` that map one to one onto TrainConfig fields, with their metavar.
TRAIN_OPTIONS = {
    "data": "SPEC", "preset": "NAME", "loss": "NAME", "constraint": "NAME", "steps": "N",
    "batch_size": "B", "n_critic": "K", "optimizer": "NAME", "lr_g": "X", "lr_d": "X",
    "clip_value": "C", "gp_weight": "L", "z_dim": "Z", "width": "W", "d_norm": "NAME",
    "image_size": "S", "channels": "C", "seed": "S", "device": "NAME", "sample_every": "N",
    "checkpoint_every": "N", "log_every": "N", "num_samples": "N",
}


class OneLineParser(argparse.ArgumentParser):
    """Argument parser whose errors are one line, without the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="gan-workbench", description="Train and inspect GANs. "
                           "Without a command, opens the window.")
    parser.add_argument("--version", action="version", version=f"gan-workbench {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=OneLineParser)

    train = commands.add_parser("train", help="train a GAN headless and write a run folder")
    for name, metavar in TRAIN_OPTIONS.items():
        info = FIELDS[name]
        choices_text = f" Choices: {', '.join(info.choices)}." if info.choices else ""
        range_text = f" Range: {info.range_text}." if info.range_text else ""
        unit = f" ({info.unit})" if info.unit else ""
        train.add_argument("--" + name.replace("_", "-"), dest=name, metavar=metavar, default=None,
                           help=f"{info.help}{unit}{choices_text}{range_text}")
    train.add_argument("--betas", nargs=2, metavar=("B1", "B2"), default=None, help=FIELDS["betas"].help)
    train.add_argument("--config", type=Path, metavar="FILE", help="TOML file of settings; options given on "
                       "the command line override it")
    train.add_argument("--out", type=Path, metavar="RUN_DIR", required=True, help="run folder to create")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint; "
                       "options given override its saved settings (for example a larger --steps)")
    train.add_argument("--download", action="store_true", help="download MNIST, Fashion-MNIST or CIFAR-10 into "
                       "the data PATH if missing (needs internet)")
    train.add_argument("--quiet", action="store_true", help="print only errors and the final summary")

    try:
        from workbench.core.fid_cli import add_fid_arguments
    except ImportError:  # the FID module is optional at import time
        add_fid_arguments = None
    if add_fid_arguments is not None:
        fid = commands.add_parser("fid", help="compute the Fréchet Inception Distance of a run or data set")
        add_fid_arguments(fid)
    return parser


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML settings file: top-level keys, or a [train] table, named as TrainConfig fields."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("config", f"{path} not found") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("config", f"{path} is not valid TOML: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError("config", f"{path} is not valid TOML: TOML files must be UTF-8 ({error})") from None
    except OSError as error:
        raise ConfigError("config", f"cannot read {path}: {error.strerror or error}") from None
    if isinstance(data.get("train"), dict):
        data = data["train"]
    return {key.replace("-", "_"): value for key, value in data.items()}


def gather_train_values(args: argparse.Namespace) -> dict[str, Any]:
    """Merge settings: a resumed run's config.json, then --config, then command-line options."""
    from workbench.core import runs

    values: dict[str, Any] = {}
    saved: dict[str, Any] = {}
    if args.resume and (args.out / runs.CONFIG_FILE).is_file():
        saved = runs.read_config(args.out)
        values.update(saved)
    if args.config is not None:
        values.update(load_config_file(args.config))
    for name in (*TRAIN_OPTIONS, "betas"):
        value = getattr(args, name)
        if value is not None:
            values[name] = value
    if "data" not in values:
        raise ConfigError("data", "missing; pass --data SPEC, for example --data ring8 or --data mnist:PATH")
    if saved:
        check_resume_changes(saved, values)
    return values


def check_resume_changes(saved: dict[str, Any], values: dict[str, Any]) -> None:
    """Reject changes that a resumed run cannot honour: its data set and its preset label.

    The checkpoint stores the position in the data, so another data set would
    silently continue with a stale sampler; a new preset name would not re-apply
    the preset's values over the saved ones, so config.json would contradict itself.
    """
    from workbench.core.data import parse_data_spec

    if str(parse_data_spec(str(values["data"]))) != str(parse_data_spec(str(saved["data"]))):
        raise ConfigError("data", f"a resumed run keeps its data set {saved['data']!r}; to train on "
                                  f"{values['data']!r}, start a new run (or fork this one in the window)")
    if values.get("preset", "custom") != saved.get("preset", "custom"):
        raise ConfigError("preset", f"a resumed run keeps its preset {saved.get('preset')!r}; change single "
                                    "settings such as --lr-g instead, or start a new run")


def check_resume_steps(args: argparse.Namespace, steps: int) -> None:
    """Raise ConfigError when --steps does not go past the checkpoint's step."""
    from workbench.core import runs

    done = int(runs.load_checkpoint(args.out / runs.CHECKPOINT_FILE)["step"])
    if steps <= done:
        raise ConfigError("steps", f"the run is already at step {done}; pass --steps greater than {done} "
                                   "to continue it")


class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most 10 times a second."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.total, self.start, self.enabled = total, start, enabled
        self.t0 = time.perf_counter()
        self.last_draw = 0.0

    def rate(self, step: int) -> float:
        elapsed = time.perf_counter() - self.t0
        return (step - self.start) / elapsed if elapsed > 0 else 0.0

    def update(self, step: int) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self.last_draw < 0.1 and step < self.total):
            return
        self.last_draw = now
        rate = self.rate(step)
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        filled = int(30 * step / self.total)
        eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta != float("inf") else "--:--:--"
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {step}/{self.total} "
                         f"{rate:.1f} steps/s ETA {eta_text}\033[K")
        sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


class _BarAwareHandler(logging.StreamHandler):
    """Log handler that clears the progress bar line before printing."""

    def __init__(self, bar_enabled: bool):
        super().__init__(sys.stdout)
        self.bar_enabled = bar_enabled

    def emit(self, record: logging.LogRecord) -> None:
        if self.bar_enabled:
            sys.stderr.write("\r\033[K")
        super().emit(record)


def run_train(args: argparse.Namespace) -> int:
    from workbench.core import distributed

    show_bar = sys.stderr.isatty() and not args.quiet
    handler = _BarAwareHandler(show_bar)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        return _train(args, show_bar)
    finally:
        logger.removeHandler(handler)
        distributed.destroy_process_group()


def _train(args: argparse.Namespace, show_bar: bool) -> int:
    from workbench.core import distributed
    from workbench.core.config import build_config
    from workbench.core.trainer import NonFiniteError, Trainer

    config = build_config(gather_train_values(args))
    if args.resume:
        check_resume_steps(args, config.steps)
    # Under torchrun, join the process group; only rank 0 reports progress.
    context = distributed.init_from_env(config.device)
    is_main = context is None or context.rank == 0
    if not is_main:
        logger.setLevel(logging.WARNING)
    ranks = {} if context is None else dict(rank=context.rank, world_size=context.world_size,
                                            local_rank=context.local_rank)
    trainer = Trainer(config, args.out, resume=args.resume, download=args.download, **ranks)
    bar = ProgressBar(config.steps, trainer.step, show_bar and is_main)
    stop_requested = []

    def on_interrupt(signum, frame):
        stop_requested.append(signum)
        trainer.request_stop()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        trainer.run(progress=lambda row: bar.update(row["step"]))
        if stop_requested:
            trainer.save_checkpoint()
    except NonFiniteError as error:
        bar.clear()
        print(f"gan-workbench train: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # runs.RunWriteError: a full disk or a read-only run folder
        bar.clear()
        print(f"gan-workbench train: error: {error}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, previous)
        trainer.close()
    bar.clear()
    state = "stopped" if stop_requested else "finished"
    if is_main:
        print(f"{state} at step {trainer.step}/{config.steps} in {trainer.elapsed:.1f} s "
              f"({bar.rate(trainer.step):.1f} steps/s on {trainer.device_name}); run folder: {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return run_train(args)
        if args.command == "fid":
            from workbench.core.fid_cli import run_fid

            return run_fid(args)
        from workbench.app.main_window import run_app

        return run_app(sys.argv[:1] if argv is None else ["gan-workbench", *argv])
    except ConfigError as error:
        print(f"gan-workbench: error: {describe_error(error, args.command)}", file=sys.stderr)
        return 2


def describe_error(error: ConfigError, command: str | None) -> str:
    """Return the error's message, naming the command-line option where the field is one."""
    if command == "train" and error.field in (*TRAIN_OPTIONS, "betas", "out", "config"):
        return f"--{error.field.replace('_', '-')}: {error.detail}"
    return str(error)
