"""Input validation shared by the command line, config files and the window.

Every check raises :class:`ConfigError`, a ``ValueError`` whose message names
the field, the value received and what is allowed, so the same text can be
printed by the CLI and shown next to a form field.
"""

from __future__ import annotations

import math
from typing import Any, Iterable


class ConfigError(ValueError):
    """Invalid user input; ``field`` names the option or form field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


def _describe(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def coerce_int(field: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an int within [minimum, maximum] or raise ConfigError."""
    if isinstance(value, bool):
        raise ConfigError(field, f"expected a whole number, got {_describe(value)}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ConfigError(field, f"expected a whole number, got {_describe(value)}") from None
    if not isinstance(value, int):
        raise ConfigError(field, f"expected a whole number, got {_describe(value)}")
    _check_range(field, value, minimum, maximum)
    return value


def coerce_float(
    field: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> float:
    """Return ``value`` as a finite float within the range or raise ConfigError.

    Integers are accepted and converted, because torch's optimizers reject
    some integer hyperparameters (Adam's betas written as ``0``).
    """
    if isinstance(value, bool):
        raise ConfigError(field, f"expected a number, got {_describe(value)}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ConfigError(field, f"expected a number, got {_describe(value)}") from None
    if not isinstance(value, (int, float)):
        raise ConfigError(field, f"expected a number, got {_describe(value)}")
    try:
        value = float(value)
    except OverflowError:
        raise ConfigError(field, f"expected a number, got {value}, which is too large") from None
    if not math.isfinite(value):
        raise ConfigError(field, f"expected a finite number, got {value}")
    if minimum is not None:
        if exclusive_minimum and value <= minimum:
            raise ConfigError(field, f"must be greater than {minimum:g}, got {value:g}")
        if not exclusive_minimum and value < minimum:
            raise ConfigError(field, f"must be at least {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise ConfigError(field, f"must be at most {maximum:g}, got {value:g}")
    return value


def coerce_choice(field: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices`` (case-insensitive) or raise ConfigError."""
    options = list(choices)
    if not isinstance(value, str) or value.strip().lower() not in options:
        raise ConfigError(field, f"unknown value {_describe(value)}; choose one of {', '.join(options)}")
    return value.strip().lower()


def _check_range(field: str, value: int, minimum: int | None, maximum: int | None) -> None:
    if minimum is not None and value < minimum:
        raise ConfigError(field, f"must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(field, f"must be at most {maximum}, got {value}")
