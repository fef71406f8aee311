"""Locate, verify and (on request) download the FID Inception weights.

The file is ``pt_inception-2015-12-05-6726825d.pth``: TensorFlow's
2015-12-05 Inception graph ported to PyTorch by pytorch-fid, the same file
torch-fidelity uses. ``6726825d`` is the start of its SHA-256 digest,
following torch.hub's naming convention, and every candidate file is checked
against it before use.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

WEIGHTS_FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILE_NAME
)
WEIGHTS_SHA256_PREFIX = "6726825d"
WEIGHTS_ENV_VAR = "GAN_WORKBENCH_INCEPTION_WEIGHTS"


class WeightsNotFoundError(RuntimeError):
    """No usable Inception weight file: missing, or its SHA-256 does not match."""


def hub_weights_path() -> Path:
    """Return where torch.hub keeps the weights: ``<hub dir>/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE_NAME


def resolve_weights(path: str | Path | None = None, download: bool = False) -> Path:
    """Return the path of a verified Inception weight file.

    Candidates, in order: ``path``; the file named by the environment variable
    ``GAN_WORKBENCH_INCEPTION_WEIGHTS``; the torch hub cache. Only the first
    one given is used, so a wrong explicit path is an error rather than a
    silent fall-back. With ``download=True`` a missing file is fetched from
    the pytorch-fid release (about 92 MB) to that location.

    Raises
    ------
    WeightsNotFoundError
        When the file is missing and ``download`` is false, or when its
        SHA-256 digest does not start with ``6726825d``.
    """
    candidate, origin = _candidate(path)
    if not candidate.is_file():
        if not download:
            raise WeightsNotFoundError(_missing_message(candidate, origin))
        _download(candidate)
    verify_weights(candidate)
    return candidate


def verify_weights(path: Path) -> str:
    """Return the SHA-256 hex digest of ``path`` after checking its prefix."""
    stat = path.stat()
    digest = _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if not digest.startswith(WEIGHTS_SHA256_PREFIX):
        raise WeightsNotFoundError(
            f"Inception weights at {path} have SHA-256 {digest[:16]}..., expected it to start "
            f"with {WEIGHTS_SHA256_PREFIX}; the file is damaged or a different model, so "
            f"delete it and download {WEIGHTS_URL} again"
        )
    return digest


def _candidate(path: str | Path | None) -> tuple[Path, str]:
    if path is not None and str(path) != "":
        return Path(path).expanduser(), "given path"
    from_env = os.environ.get(WEIGHTS_ENV_VAR, "")
    if from_env:
        return Path(from_env).expanduser(), f"${WEIGHTS_ENV_VAR}"
    return hub_weights_path(), "torch hub cache"


def _missing_message(candidate: Path, origin: str) -> str:
    # One line, so the CLI can print it as its single error line.
    return (
        f"Inception weights not found at {candidate} ({origin}). Download {WEIGHTS_URL} "
        f"and put it at {hub_weights_path()} or name it with --weights FILE or "
        f"${WEIGHTS_ENV_VAR}, or pass --download-weights to fetch it; "
        f"offline, use --extractor domain instead"
    )


def _download(destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading Inception weights from %s to %s", WEIGHTS_URL, destination)
    # download_url_to_file writes to a temporary file, checks the hash prefix
    # and only then moves the file into place.
    try:
        torch.hub.download_url_to_file(
            WEIGHTS_URL, str(destination), hash_prefix=WEIGHTS_SHA256_PREFIX, progress=True
        )
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a hash mismatch is a RuntimeError
        reason = getattr(error, "reason", None) or str(error).splitlines()[0]
        raise WeightsNotFoundError(
            f"downloading the Inception weights from {WEIGHTS_URL} failed ({reason}); check the "
            f"network, or download the file by hand and pass it with --weights FILE; offline, use "
            f"--extractor domain instead"
        ) from None


@functools.lru_cache(maxsize=8)
def _sha256(resolved_path: str, size: int, mtime_ns: int) -> str:
    # Size and mtime are part of the cache key so that a replaced file is
    # hashed again.
    digest = hashlib.sha256()
    with open(resolved_path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
