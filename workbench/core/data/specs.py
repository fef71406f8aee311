"""Data specs: the one-line strings that name a training set.

A spec is ``KIND`` for the toy mixtures (``ring8``) or ``KIND:PATH`` for data on
disk (``mnist:/data/mnist``). The CLI's ``--data``, config files and the window
all use this syntax.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.core.validation import ConfigError

TOY_DATASETS = ("ring8", "grid25", "spiral")
DATA_KINDS = ("ring8", "grid25", "spiral", "mnist", "fashion-mnist", "cifar10", "folder")

# (channels, height, width) of each kind when the caller asks for no other size.
_DEFAULT_SHAPES = {
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "folder": (3, 32, 32),
}


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec.

    Attributes
    ----------
    kind : str
        One of ``DATA_KINDS``.
    path : Path or None
        Absolute folder for data on disk, None for the toy mixtures.
    """

    kind: str
    path: Path | None

    def __str__(self) -> str:
        if self.path is None:
            return self.kind
        return f"{self.kind}:{self.path}"

    @property
    def is_toy(self) -> bool:
        """True for the 2D mixtures generated in code."""
        return self.kind in TOY_DATASETS


def parse_data_spec(text: str, field: str = "data") -> DataSpec:
    """Parse ``KIND`` or ``KIND:PATH`` into a DataSpec.

    Only the syntax is checked, so a missing folder passes here and fails in
    ``load_dataset``. The kind is case-insensitive. ``~`` in the path is
    expanded and a relative path is made absolute against the current working
    directory, so the spec keeps naming the same folder when saved in a run.

    Raises
    ------
    ConfigError
        For an unknown kind, a path given to a toy mixture, or a missing path.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(field, f"expected a data spec such as 'ring8' or 'mnist:PATH', got {text!r}")
    kind, separator, path_text = text.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in DATA_KINDS:
        raise ConfigError(field, f"unknown data kind {kind!r} in {text!r}; choose one of {', '.join(DATA_KINDS)}")

    if kind in TOY_DATASETS:
        if separator:
            raise ConfigError(field, f"{kind} is generated in code and takes no path; write just {kind!r}")
        return DataSpec(kind, None)

    path_text = path_text.strip()
    if not path_text:
        raise ConfigError(field, f"{kind} needs a folder; write it as '{kind}:PATH', for example '{kind}:./data'")
    try:
        path = Path(path_text).expanduser()
    except RuntimeError:  # "~name" for a user that does not exist
        raise ConfigError(field, f"cannot expand the home folder in {path_text!r}; write the full path") from None
    return DataSpec(kind, path.absolute())


def as_data_spec(spec: DataSpec | str, field: str = "data") -> DataSpec:
    """Return ``spec`` itself or parse it when it is a string."""
    if isinstance(spec, DataSpec):
        return spec
    return parse_data_spec(spec, field)


def default_image_shape(spec: DataSpec | str) -> tuple[int, int, int] | None:
    """Return the (C, H, W) that ``load_dataset`` gives by default, None for toy data."""
    return _DEFAULT_SHAPES.get(as_data_spec(spec).kind)
