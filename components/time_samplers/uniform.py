"""Off-diagonal pairs uniform on the upper triangle, optionally within an annealed gap."""

import attrs
import torch

from flowmap_components.time_samplers.common import (
    assemble,
    diagonal_count,
    max_gap,
    place_gaps,
    uniform,
)
from flowmap_core.protocols import Draw, TimeSample
from flowmap_core.registry import register
from flowmap_core.validators import non_negative_integer, unit_interval


@register("time_sampler", "uniform")
@attrs.define(frozen=True, kw_only=True)
class UniformTriangle:
    """A share `diagonal_fraction` with s = t ~ U(0, 1); the rest uniform on {s < t, t - s <= g}.

    g is `gap(step)`: `max_gap`, reached from `initial_gap` over `anneal_steps` steps
    (by default 1 from the start: the whole triangle). The gap
    d = t - s has density proportional to (1 - d) on [0, g], drawn by inverting its CDF,
    then s ~ U(0, 1 - d).
    """

    diagonal_fraction: float = attrs.field(default=0.5, validator=unit_interval)
    max_gap: float = attrs.field(default=1.0, validator=unit_interval)
    initial_gap: float = attrs.field(default=0.0, validator=unit_interval)
    anneal_steps: int = attrs.field(default=0, validator=non_negative_integer)

    def gap(self, step: int) -> float:
        """The largest gap allowed at `step` (see `max_gap` in common.py)."""
        return max_gap(step, initial=self.initial_gap, final=self.max_gap, anneal_steps=self.anneal_steps)

    def __call__(self, draw: Draw) -> TimeSample:
        n_diag = diagonal_count(draw.n, self.diagonal_fraction)
        g = self.gap(draw.step)
        mass = uniform(draw.n - n_diag, draw.generator, draw.dtype) * (2 * g - g * g)
        d = 1 - torch.sqrt(1 - mass)
        s, t = place_gaps(d, draw.generator)
        return assemble(uniform(n_diag, draw.generator, draw.dtype), s, t, draw.device)
