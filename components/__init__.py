"""Every interchangeable component of flowmap, one family per folder.

Importing this package registers all built-in components (with the registry and gin).
"""

from flowmap_components import (  # noqa: F401
    backbones,
    conditioning,
    couplings,
    datasets,
    derivatives,
    exact,
    features,
    interpolants,
    loggers,
    lr_schedules,
    metrics,
    objectives,
    optimizers,
    parameterisations,
    samplers,
    stopgrad,
    teachers,
    time_samplers,
    velocities,
    warm_start,
    weighting,
)
