"""Move a sampler's times toward the data end (t = 1) by a monotone shift."""

import attrs
import torch

from flowmap_core.protocols import Draw, TimeSample, TimeSampler
from flowmap_core.registry import register
from flowmap_core.validators import positive


def shift_time(u: torch.Tensor, factor: float) -> torch.Tensor:
    """a u / (1 + (a - 1) u): increasing, fixes 0 and 1; a > 1 favours times near 1 (data)."""
    return factor * u / (1 + (factor - 1) * u)


@register("time_sampler", "shift")
@attrs.define(frozen=True, kw_only=True)
class Shift:
    """`base`'s pairs with both times mapped through `shift_time(., factor)`.

    The map is increasing, so s <= t and the diagonal rows stay as they are; with factor
    a the density of a uniform time becomes a / (a - (a - 1) tau)^2, a times denser at
    tau = 1 than uniform and a times sparser at 0. On the checkerboard the few-step error
    sits in the last jump, where the squares' edges form, and a > 1 moves pairs there.
    (The form of Stable Diffusion 3's timestep shift, applied to our time, where 1 is data:
    a > 1 favours the data end, where SD3's, applied to its noise level, favours noise.)
    """

    base: TimeSampler
    factor: float = attrs.field(default=2.0, validator=positive)

    def __call__(self, draw: Draw) -> TimeSample:
        pairs = self.base(draw)
        return TimeSample(
            s=shift_time(pairs.s, self.factor), t=shift_time(pairs.t, self.factor), n_diagonal=pairs.n_diagonal
        )
