"""The trigonometric interpolant `x_t = cos(pi t / 2) x0 + sin(pi t / 2) x1`."""

import math

import attrs
import torch
from torch import Tensor

from flowmap_components.interpolants.affine import AffineInterpolant
from flowmap_core.protocols import Coefficients
from flowmap_core.registry import register


@register("interpolant", "trigonometric")
@attrs.define(frozen=True, kw_only=True)
class Trigonometric(AffineInterpolant):
    """alpha = cos(pi t / 2), beta = sin(pi t / 2): variance-preserving for unit-variance data."""

    def coefficients(self, t: Tensor) -> Coefficients:
        angle = 0.5 * math.pi * t
        cos, sin = torch.cos(angle), torch.sin(angle)
        return Coefficients(alpha=cos, beta=sin, alpha_dot=-0.5 * math.pi * sin, beta_dot=0.5 * math.pi * cos)
