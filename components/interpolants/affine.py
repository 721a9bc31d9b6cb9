"""Shared evaluation of an affine interpolant `x_t = alpha(t) x0 + beta(t) x1`."""

import attrs
from torch import Tensor

from flowmap_core.flow_map import expand_time
from flowmap_core.protocols import Coefficients, InterpolantPoint
from flowmap_core.typing import Data, Times, typechecked


@attrs.define(frozen=True, kw_only=True)
class AffineInterpolant:
    """Base of the interpolants here: subclasses give `coefficients(t)`; this gives the point."""

    def coefficients(self, t: Tensor) -> Coefficients:
        raise NotImplementedError

    @typechecked
    def interpolate(self, x0: Data, x1: Data, t: Times) -> InterpolantPoint:
        """`xt = alpha x0 + beta x1` and `dxt = alpha' x0 + beta' x1` (Eq. 2.1 of the paper)."""
        c = self.coefficients(t)
        a, b = expand_time(c.alpha, x0), expand_time(c.beta, x0)
        a_dot, b_dot = expand_time(c.alpha_dot, x0), expand_time(c.beta_dot, x0)
        return InterpolantPoint(xt=a * x0 + b * x1, dxt=a_dot * x0 + b_dot * x1)
