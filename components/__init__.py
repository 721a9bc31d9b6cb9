"""Every interchangeable component of flowmap, one family per folder.

Importing this package registers all built-in components (with the registry and gin).
"""

from components import (  # noqa: F401
    backbones,
    datasets,
    exact,
    interpolants,
    metrics,
    objectives,
    parameterisations,
    stopgrad,
    time_samplers,
    weighting,
)
