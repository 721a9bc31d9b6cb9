"""Weight each example by a power of its time gap |t - s|."""

import attrs

from flowmap_core.registry import register
from flowmap_core.typing import Scalar, Times, typechecked
from flowmap_core.validators import non_negative


@register("weighting", "gap_power")
@attrs.define(frozen=True, kw_only=True)
class GapPower:
    """mean_i |t_i - s_i|^power l_i. With power 2, velocity-form residuals (PSD: X-space
    residual / (t - s)) become X-space ones, as in flow map matching's published losses."""

    power: float = attrs.field(default=2.0, validator=non_negative)

    @typechecked
    def __call__(self, per_example: Times, s: Times, t: Times) -> Scalar:
        return ((t - s).abs().pow(self.power) * per_example).mean()
