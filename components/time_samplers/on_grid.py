"""Put a share of the off-diagonal pairs exactly on the jumps that k-step sampling takes."""

import attrs
import torch

from flowmap_core.protocols import Draw, TimeSample, TimeSampler
from flowmap_core.registry import register
from flowmap_core.validators import unit_interval


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

    With `whole_path`, t is instead drawn uniformly in (i / k, (i + 1) / k]: the start is a
    grid point and the pair lies anywhere on the jump's path. LSD learns X_{s,t} by its
    derivative in t along that path (Prop. 2.2), so these pairs train every time the jump
    passes through, not only its end.
    """

    base: TimeSampler
    fraction: float = attrs.field(default=0.25, validator=unit_interval)
    step_counts: tuple[int, ...] = attrs.field(default=(1, 2, 4, 8, 16), converter=tuple, validator=_step_counts)
    whole_path: bool = False

    def __call__(self, draw: Draw) -> TimeSample:
        pairs = self.base(draw)
        n_grid = int(round((draw.n - pairs.n_diagonal) * self.fraction))
        if n_grid == 0:
            return pairs
        on = draw.generator.device
        counts = torch.tensor(self.step_counts, dtype=draw.dtype, device=on)
        k = counts[torch.randint(len(self.step_counts), (n_grid,), generator=draw.generator, device=on)]
        i = torch.floor(torch.rand(n_grid, generator=draw.generator, device=on, dtype=draw.dtype) * k)
        end = i + 1
        if self.whole_path:
            end = end - torch.rand(n_grid, generator=draw.generator, device=on, dtype=draw.dtype)
        s = torch.cat([pairs.s[:-n_grid], (i / k).to(draw.device)])
        t = torch.cat([pairs.t[:-n_grid], (end / k).to(draw.device)])
        return TimeSample(s=s, t=t, n_diagonal=pairs.n_diagonal)
