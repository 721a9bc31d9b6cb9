"""Backward maps: pairs on the whole square [0, 1]^2, not only s < t."""

import attrs
import torch

from components.time_samplers.common import check_fraction
from flowmap_core.protocols import TimeSample, TimeSampler
from flowmap_core.registry import register


@register("time_sampler", "full_square")
@attrs.define(frozen=True, kw_only=True)
class FullSquare:
    """Pairs on the whole square: `base`'s pairs with s and t swapped in a share of the rows.

    A share `backward_fraction` of the off-diagonal rows is swapped, so the map also
    learns t < s (inversion, data -> noise).
    """

    base: TimeSampler
    backward_fraction: float = attrs.field(default=0.5, validator=check_fraction)

    def __call__(
        self,
        n: int,
        *,
        step: int,
        total_steps: int,
        generator: torch.Generator,
        device: torch.device,
        dtype: torch.dtype,
    ) -> TimeSample:
        pairs = self.base(n, step=step, total_steps=total_steps, generator=generator, device=device, dtype=dtype)
        k = pairs.n_diagonal
        flip = torch.rand(n - k, generator=generator, device=generator.device) < self.backward_fraction
        flip = torch.cat([torch.zeros(k, dtype=torch.bool, device=flip.device), flip]).to(device)
        s = torch.where(flip, pairs.t, pairs.s)
        t = torch.where(flip, pairs.s, pairs.t)
        return TimeSample(s=s, t=t, n_diagonal=k)
