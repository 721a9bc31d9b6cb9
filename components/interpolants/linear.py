"""The linear interpolant `x_t = (1 - t) x0 + t x1` (rectified flow / flow matching)."""

import attrs
import torch
from torch import Tensor

from flowmap_components.interpolants.affine import AffineInterpolant
from flowmap_core.protocols import Coefficients
from flowmap_core.registry import register


@register("interpolant", "linear")
@attrs.define(frozen=True, kw_only=True)
class Linear(AffineInterpolant):
    """alpha = 1 - t, beta = t: straight lines from noise to data."""

    def coefficients(self, t: Tensor) -> Coefficients:
        one = torch.ones_like(t)
        return Coefficients(alpha=1 - t, beta=t, alpha_dot=-one, beta_dot=one)
