"""Independent pairs: each data point with the noise drawn for it (the product coupling)."""

import attrs
from torch import Tensor

from flowmap_core.registry import register


@register("coupling", "independent")
@attrs.define(frozen=True, kw_only=True)
class Independent:
    """(x0, x1) ~ N(0, I) x data: the noise as drawn (the paper's coupling, and the default)."""

    def __call__(self, x0: Tensor, x1: Tensor, label: Tensor | None) -> Tensor:
        return x0
