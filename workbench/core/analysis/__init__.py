"""Mode-collapse analysis: coverage, diversity, nearest neighbours, an alarm and 2-D view fields.

Qt-free. The window and the trainer import from here.
"""

from workbench.core.analysis.alarm import AlarmEvent, CollapseAlarm, MetricBreach
from workbench.core.analysis.coverage import (
    DEFAULT_NUM_SAMPLES,
    HIGH_QUALITY_STDS,
    ClassCoverageReport,
    CoverageReport,
    class_coverage,
    generate_points,
    kl_divergence,
    mixture_coverage,
)
from workbench.core.analysis.features import diversity_ratio, mean_pairwise_distance, nearest_neighbours
from workbench.core.analysis.plane import (
    GENERATOR_LOSSES,
    discriminator_heatmap,
    eval_mode,
    generator_gradient_field,
    generator_manifold,
    grid_axes,
    latent_grid,
    module_device,
)

__all__ = [
    "AlarmEvent",
    "ClassCoverageReport",
    "CollapseAlarm",
    "CoverageReport",
    "DEFAULT_NUM_SAMPLES",
    "GENERATOR_LOSSES",
    "HIGH_QUALITY_STDS",
    "MetricBreach",
    "class_coverage",
    "discriminator_heatmap",
    "diversity_ratio",
    "eval_mode",
    "generate_points",
    "generator_gradient_field",
    "generator_manifold",
    "grid_axes",
    "kl_divergence",
    "latent_grid",
    "mean_pairwise_distance",
    "mixture_coverage",
    "module_device",
    "nearest_neighbours",
]
