"""Reduction shared by the objectives: the per-example mean square of a residual."""

from torch import Tensor


def mean_square(residual: Tensor) -> Tensor:
    """Mean over the data dimensions of `residual ** 2`, one value per example."""
    return residual.pow(2).flatten(1).mean(1)
