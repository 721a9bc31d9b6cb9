"""Data sources (family `dataset`)."""

from flowmap_components.datasets import checkerboard, gaussian, gaussian_mixture, points, scaled, shards  # noqa: F401
