"""Put a share of the off-diagonal pairs exactly on the jumps that k-step sampling takes."""

import attrs
import torch

from components.time_samplers.common import check_fraction
from flowmap_core.protocols import TimeSample, TimeSampler
from flowmap_core.registry import register


def _step_counts(instance: "OnGrid", attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
    if not value or min(value) < 1:
        raise ValueError(f"OnGrid.step_counts must be positive integers, got {value}")


@register("time_sampler", "on_grid")
@attrs.define(frozen=True, kw_only=True)
class OnGrid:
    """`base`'s pairs, with a share `fraction` of the off-diagonal rows replaced by grid jumps.

    A grid jump is (i / k, (i + 1) / k) for k drawn uniformly from `step_counts` and i
    uniformly from 0..k-1: exactly the maps uniform k-step sampling composes, so the
    training effort goes where sampling looks (as shortcut models' dyadic steps do).
    """

    base: TimeSampler
    fraction: float = attrs.field(default=0.25, validator=check_fraction)
    step_counts: tuple[int, ...] = attrs.field(default=(1, 2, 4, 8, 16), converter=tuple, validator=_step_counts)

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
        n_grid = int(round((n - pairs.n_diagonal) * self.fraction))
        if n_grid == 0:
            return pairs
        counts = torch.tensor(self.step_counts, dtype=dtype, device=generator.device)
        k = counts[torch.randint(len(self.step_counts), (n_grid,), generator=generator, device=generator.device)]
        i = torch.floor(torch.rand(n_grid, generator=generator, device=generator.device, dtype=dtype) * k)
        s = torch.cat([pairs.s[:-n_grid], (i / k).to(device)])
        t = torch.cat([pairs.t[:-n_grid], ((i + 1) / k).to(device)])
        return TimeSample(s=s, t=t, n_diagonal=pairs.n_diagonal)
