"""Follow a run folder that another process writes: tail metrics.csv, samples and events.

:class:`MetricsTail`, :class:`LineTail` and :class:`SampleScanner` are Qt-free
readers that return only what is new since their last poll. :class:`RunFollower`
polls them from a timer in the GUI thread and sends what it found as signals, so
the window feeds its plots and samples view the same way as from its own
training thread.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QObject, QTimer, Signal

from workbench.app.history import METRIC_COLUMNS, rows_to_array
from workbench.app.samples_view import MAX_GRIDS
from workbench.core import runs
from workbench.core.export import list_samples

logger = logging.getLogger(__name__)

POLL_INTERVAL_MS = 300
# Bytes read per poll at most, so opening a huge metrics.csv does not freeze the window for long.
MAX_READ_BYTES = 8 * 1024 * 1024


class LineTail:
    """Read the complete lines appended to a text file since the last poll.

    The byte offset of the first unread line is remembered, and text after the
    last newline (a line being written, or torn by a crash) waits for the next
    poll. A file that shrinks or is replaced (a new inode, as when a resumed run
    rewrites metrics.csv atomically) is read again from its start, and
    ``poll`` reports that with ``restarted`` true.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self._identity: tuple[int, int] | None = None

    def poll(self, max_bytes: int = MAX_READ_BYTES) -> tuple[list[str], bool]:
        """Return (new complete lines without their newline, whether the file restarted)."""
        try:
            info = os.stat(self.path)
        except OSError:
            return [], False
        identity = (info.st_dev, info.st_ino)
        restarted = False
        if self._identity is not None and (identity != self._identity or info.st_size < self.offset):
            restarted = True
            self.offset = 0
        self._identity = identity
        if info.st_size == self.offset:
            return [], restarted
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read(max_bytes)
        except OSError as error:
            logger.warning("cannot read %s: %s", self.path, error)
            return [], restarted
        end = chunk.rfind(b"\n")
        if end < 0:
            return [], restarted
        self.offset += end + 1
        text = chunk[:end].decode("utf-8", errors="replace")
        return text.split("\n"), restarted


class MetricsTail:
    """Parse the rows appended to a metrics.csv since the last poll.

    The header line names the columns, so files with columns in another order
    still parse. Rows whose cell count differs from the header, or whose cells
    are not numbers, are skipped with a debug message.
    """

    def __init__(self, path: str | Path):
        self.lines = LineTail(path)
        self.header: list[str] | None = None

    @property
    def path(self) -> Path:
        return self.lines.path

    def poll(self) -> tuple[list[dict], bool]:
        """Return (new rows as dicts of floats with an int step, whether the file restarted)."""
        lines, restarted = self.lines.poll()
        if restarted:
            self.header = None
        rows = []
        for cells in csv.reader(line for line in lines if line):
            if self.header is None:
                self.header = cells
                continue
            row = self._parse(cells)
            if row is not None:
                rows.append(row)
        return rows, restarted

    def _parse(self, cells: list[str]) -> dict | None:
        if len(cells) != len(self.header):
            logger.debug("skipping a metrics row of %d cells in %s", len(cells), self.path)
            return None
        try:
            row = {name: (float(cell) if cell else math.nan) for name, cell in zip(self.header, cells)}
            row["step"] = int(row["step"])
        except (KeyError, ValueError):
            logger.debug("skipping a metrics row that does not parse in %s: %r", self.path, cells)
            return None
        return row


class SampleScanner:
    """Find the sample grids (samples/step_NNNNNN.png) added since the last poll.

    The folder is listed again when its modification time changes, and on every
    ``RESCAN_EVERY``-th poll in case a file system with coarse timestamps hid a change.
    """

    RESCAN_EVERY = 10

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._seen: set[str] = set()
        self._folder_mtime: int | None = None
        self._polls = 0

    def poll(self) -> list[tuple[int, Path]]:
        """Return (step, path) of the new grids, in step order."""
        try:
            mtime = os.stat(self.run_dir / runs.SAMPLES_DIR).st_mtime_ns
        except OSError:
            return []
        self._polls += 1
        if mtime == self._folder_mtime and self._polls % self.RESCAN_EVERY:
            return []
        self._folder_mtime = mtime
        found = [(step, path) for step, path in list_samples(self.run_dir) if path.name not in self._seen]
        self._seen.update(path.name for _, path in found)
        return found


def load_grid(path: Path) -> np.ndarray | None:
    """Return a PNG as a uint8 (H, W, 3) array, or None when it cannot be read (yet)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as error:
        logger.debug("cannot read the sample grid %s yet: %s", path, error)
        return None


class RunFollower(QObject):
    """Poll a run folder from a timer and report new metrics, sample grids and events.

    Signals
    -------
    restarted()
        metrics.csv was replaced or truncated (a resumed run); what was shown is stale.
    metrics_ready(np.ndarray)
        New metric rows, float64 (k, len(METRIC_COLUMNS)), as the training thread sends them.
    samples_ready(int, np.ndarray)
        A new sample grid: its step and a uint8 (H, W, 3) image.
    event_ready(dict)
        One parsed line of the run's events.jsonl.
    fid_ready(list)
        Every row of fid.csv (see runs.read_fid), sent when the file changes.
    """

    restarted = Signal()
    metrics_ready = Signal(object)
    samples_ready = Signal(int, object)
    event_ready = Signal(object)
    fid_ready = Signal(object)

    def __init__(self, run_dir: str | Path, interval_ms: int = POLL_INTERVAL_MS, parent=None):
        super().__init__(parent)
        self.run_dir = Path(run_dir)
        self.metrics = MetricsTail(self.run_dir / runs.METRICS_FILE)
        self.events = LineTail(self.run_dir / runs.EVENTS_FILE)
        self.samples = SampleScanner(self.run_dir)
        self.min_step = -1     # rows at or below this step are dropped (set for a fork's own rows)
        self._failed_grids: list[tuple[int, Path]] = []
        self._first_scan = True
        self._fid_identity: tuple[int, int] | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.poll)

    def start(self) -> None:
        """Read what the folder contains now, then poll it on the timer."""
        self.poll()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    @property
    def active(self) -> bool:
        return self.timer.isActive()

    def poll(self) -> None:
        """Read new metric rows, grids and events, and emit them."""
        self._poll_metrics()
        self._poll_samples()
        self._poll_events()
        self._poll_fid()

    def _poll_metrics(self) -> None:
        rows, restarted = self.metrics.poll()
        if restarted:
            logger.info("%s was rewritten (the run was resumed); reading it again", self.metrics.path)
            self.restarted.emit()
        rows = [row for row in rows if row["step"] > self.min_step]
        if rows:
            self.metrics_ready.emit(rows_to_array(rows, METRIC_COLUMNS))

    def _poll_samples(self) -> None:
        found = self._failed_grids + self.samples.poll()
        if self._first_scan:
            found = found[-MAX_GRIDS:]   # the samples view keeps no more than this
            self._first_scan = False
        self._failed_grids = []
        for step, path in sorted(found):
            grid = load_grid(path)
            if grid is None:
                if path.exists():
                    self._failed_grids.append((step, path))   # try again on the next poll
                continue
            self.samples_ready.emit(step, grid)

    def _poll_events(self) -> None:
        lines, _ = self.events.poll()
        for line in lines:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                logger.debug("skipping an events line that is not JSON in %s: %r", self.events.path, line)
                continue
            self.event_ready.emit(event)

    def _poll_fid(self) -> None:
        try:
            info = os.stat(self.run_dir / runs.FID_FILE)
        except OSError:
            return
        identity = (info.st_size, info.st_mtime_ns)
        if identity != self._fid_identity:
            self._fid_identity = identity
            self.fid_ready.emit(runs.read_fid(self.run_dir))
