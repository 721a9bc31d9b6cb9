"""Backward maps: pairs on the whole square [0, 1]^2, not only s < t."""

import attrs
import torch

from flowmap_core.protocols import Draw, TimeSample, TimeSampler
from flowmap_core.registry import register
from flowmap_core.validators import unit_interval


@register("time_sampler", "full_square")
@attrs.define(frozen=True, kw_only=True)
class FullSquare:
    """Pairs on the whole square: `base`'s pairs with s and t swapped in a share of the rows.

    A share `backward_fraction` of the off-diagonal rows is swapped, so the map also
    learns t < s (inversion, data -> noise).
    """

    base: TimeSampler
    backward_fraction: float = attrs.field(default=0.5, validator=unit_interval)

    def __call__(self, draw: Draw) -> TimeSample:
        pairs = self.base(draw)
        k = pairs.n_diagonal
        on = draw.generator.device
        flip = torch.rand(draw.n - k, generator=draw.generator, device=on) < self.backward_fraction
        flip = torch.cat([torch.zeros(k, dtype=torch.bool, device=on), flip]).to(draw.device)
        s = torch.where(flip, pairs.t, pairs.s)
        t = torch.where(flip, pairs.s, pairs.t)
        return TimeSample(s=s, t=t, n_diagonal=k)
