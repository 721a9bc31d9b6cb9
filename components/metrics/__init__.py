"""Sample-quality metrics (family `metric`)."""

from flowmap_components.metrics import flow_map_error, frechet, histogram_kl  # noqa: F401
