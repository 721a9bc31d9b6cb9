"""Weight the off-diagonal (self-distillation) rows against the diagonal (flow-matching) ones."""

import attrs
import torch

from flowmap_core.registry import register
from flowmap_core.typing import Scalar, Times, typechecked
from flowmap_core.validators import positive


@register("weighting", "off_diagonal")
@attrs.define(frozen=True, kw_only=True)
class OffDiagonal:
    """mean_i c_i l_i with c = `weight` where s != t and 1 where s = t: trades the map's
    accuracy off the diagonal against the velocity's on it (both terms share one network)."""

    weight: float = attrs.field(default=1.0, validator=positive)

    @typechecked
    def __call__(self, per_example: Times, s: Times, t: Times) -> Scalar:
        return (torch.where(s == t, 1.0, self.weight) * per_example).mean()
