"""MeanFlow's adaptive loss weight."""

import attrs
import torch

from flowmap_core.registry import register
from flowmap_core.typing import Scalar, Times, typechecked
from flowmap_core.validators import finite, positive


@register("weighting", "adaptive")
@attrs.define(frozen=True, kw_only=True)
class Adaptive:
    """mean_i sg(1 / (l_i + c)^p) l_i: a robust, Huber-like reduction (MeanFlow, Geng et al. 2025).

    p = 0 is the plain mean, p = 1/2 behaves like a pseudo-Huber loss, p = 1 like log(l + c).
    """

    power: float = attrs.field(default=1.0, validator=finite)
    offset: float = attrs.field(default=1e-3, validator=positive)

    @typechecked
    def __call__(self, per_example: Times, s: Times, t: Times) -> Scalar:
        weight = torch.pow(per_example.detach() + self.offset, -self.power)
        return (weight * per_example).mean()
