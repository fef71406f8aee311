"""An alarm that fires when coverage or diversity shows mode collapse."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from workbench.core.analysis.coverage import ClassCoverageReport, CoverageReport
from workbench.core.validation import coerce_float, coerce_int

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricBreach:
    """One metric below its threshold: ``mode_coverage``, ``class_coverage`` or ``diversity``."""

    metric: str
    value: float
    threshold: float


@dataclass(frozen=True)
class AlarmEvent:
    """The step at which the alarm fired and every metric that was below its threshold."""

    step: int
    breaches: tuple[MetricBreach, ...]

    @property
    def metric(self) -> str:
        """Name of the first metric below its threshold."""
        return self.breaches[0].metric

    @property
    def message(self) -> str:
        """One line for the log panel, such as ``Possible mode collapse at step 1200: mode_coverage 0.125 < 0.5``."""
        parts = [f"{b.metric} {b.value:.3g} < {b.threshold:.3g}" for b in self.breaches]
        return f"Possible mode collapse at step {self.step}: " + ", ".join(parts)


class CollapseAlarm:
    """Fire once when coverage or diversity stays below its threshold, then wait for recovery.

    Each :meth:`update` checks the covered fraction of a coverage report
    (modes or classes covered divided by their number) against
    ``threshold_modes_fraction`` and a diversity ratio against
    ``threshold_diversity``. A metric breaches when its value is below the
    threshold or NaN, so a threshold of 0 switches a metric off for finite
    values. The alarm fires on the ``patience``-th consecutive update with a
    breach and stays silent until an update with no breach re-arms it.
    """

    def __init__(self, threshold_modes_fraction: float = 0.5, threshold_diversity: float = 0.5, patience: int = 2):
        self.threshold_modes_fraction = coerce_float(
            "threshold_modes_fraction", threshold_modes_fraction, minimum=0.0, maximum=1.0
        )
        self.threshold_diversity = coerce_float("threshold_diversity", threshold_diversity, minimum=0.0)
        self.patience = coerce_int("patience", patience, minimum=1)
        self._consecutive = 0
        self._fired = False

    @property
    def fired(self) -> bool:
        """Whether the alarm has fired and not yet re-armed."""
        return self._fired

    def reset(self) -> None:
        """Re-arm the alarm and forget earlier breaches, for a new run."""
        self._consecutive = 0
        self._fired = False

    def update(
        self,
        step: int,
        report: CoverageReport | ClassCoverageReport | None = None,
        diversity: float | None = None,
    ) -> AlarmEvent | None:
        """Check one evaluation and return an event when the alarm fires, else None."""
        if report is None and diversity is None:
            raise ValueError("update needs a coverage report, a diversity ratio, or both")
        breaches = self._breaches(report, diversity)

        if not breaches:
            if self._fired:
                logger.info("Collapse alarm re-armed at step %d", step)
            self.reset()
            return None

        self._consecutive += 1
        if self._fired or self._consecutive < self.patience:
            return None
        self._fired = True
        event = AlarmEvent(step=int(step), breaches=tuple(breaches))
        logger.warning(event.message)
        return event

    def _breaches(
        self, report: CoverageReport | ClassCoverageReport | None, diversity: float | None
    ) -> list[MetricBreach]:
        """Return the metrics of this evaluation that are below their thresholds."""
        checks = []
        if isinstance(report, CoverageReport):
            checks.append(("mode_coverage", report.covered_fraction, self.threshold_modes_fraction))
        elif isinstance(report, ClassCoverageReport):
            checks.append(("class_coverage", report.covered_fraction, self.threshold_modes_fraction))
        elif report is not None:
            raise TypeError(f"report must be a CoverageReport or ClassCoverageReport, got {type(report).__name__}")
        if diversity is not None:
            checks.append(("diversity", float(diversity), self.threshold_diversity))
        return [
            MetricBreach(name, value, threshold)
            for name, value, threshold in checks
            if math.isnan(value) or value < threshold
        ]
