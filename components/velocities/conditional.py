"""The conditional velocity of the sampled pair: consistency training, MeanFlow."""

import attrs
from torch import Tensor

from flowmap_core.protocols import InterpolantPoint, ObjectiveInput
from flowmap_core.registry import register


@register("velocity", "conditional")
@attrs.define(frozen=True, kw_only=True)
class ConditionalVelocity:
    """dx_t/dt = alpha'(t) x0 + beta'(t) x1 of the example's own (x0, x1): an unbiased,
    one-sample estimate of b_t(x_t), defined only at the interpolant point x_t."""

    needs_interpolant_point: bool = attrs.field(default=True, init=False)

    def at(self, inp: ObjectiveInput, x: Tensor, t: Tensor, point: InterpolantPoint | None) -> Tensor:
        if point is None:
            raise ValueError("the conditional velocity exists only at interpolant points x_t of the batch")
        return point.dxt

    def advance(self, inp: ObjectiveInput, x: Tensor, s: Tensor, u: Tensor) -> Tensor:
        """The same pair's interpolant point at u (consistency training); `x` is its point at s."""
        return inp.interpolant.interpolate(inp.x0, inp.x1, u).xt
