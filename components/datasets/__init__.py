"""Data sources (family `dataset`)."""

from flowmap_components.datasets import checkerboard, gaussian, gaussian_mixture, points, shards  # noqa: F401
