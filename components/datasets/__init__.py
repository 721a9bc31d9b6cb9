"""Data sources (family `dataset`)."""

from components.datasets import checkerboard, gaussian, gaussian_mixture, points, shards  # noqa: F401
