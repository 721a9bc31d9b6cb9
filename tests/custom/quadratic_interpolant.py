"""A user's own interpolant, written outside the package (docs/testing.md, "Add your own component").

Two versions: a correct one, and one whose beta derivative is off by a constant, which
`flowmap_core.testing.check_interpolant` must catch.
"""

import attrs
import torch

from flowmap_core.protocols import Coefficients, InterpolantPoint
from flowmap_core.registry import register


@register("interpolant", "quadratic")
@attrs.define(frozen=True, kw_only=True)
class Quadratic:
    """alpha = (1 - t)^2, beta = 1 - (1 - t)^2."""

    beta_dot_error: float = 0.0

    def coefficients(self, t: torch.Tensor) -> Coefficients:
        return Coefficients(
            alpha=(1 - t) ** 2,
            beta=1 - (1 - t) ** 2,
            alpha_dot=-2 * (1 - t),
            beta_dot=2 * (1 - t) + self.beta_dot_error,
        )

    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> InterpolantPoint:
        c = self.coefficients(t)
        alpha, beta = c.alpha[:, None], c.beta[:, None]
        return InterpolantPoint(xt=alpha * x0 + beta * x1, dxt=c.alpha_dot[:, None] * x0 + c.beta_dot[:, None] * x1)
