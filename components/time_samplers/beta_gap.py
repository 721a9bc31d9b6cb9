"""Off-diagonal pairs whose gap t - s follows a scaled Beta distribution."""

import attrs
import scipy.special
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


def beta_quantile(u: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """Beta(a, b) quantiles of uniforms `u`: draws driven by the caller's generator alone
    (torch's Beta sampler takes no generator, which would break exact resume)."""
    values = scipy.special.betaincinv(a, b, u.detach().cpu().double().numpy())
    return torch.from_numpy(values).to(device=u.device, dtype=u.dtype)


def _positive_pair(instance: "BetaGap", attribute: attrs.Attribute, value: tuple[float, float]) -> None:
    if len(value) != 2 or min(value) <= 0:
        raise ValueError(f"BetaGap.{attribute.name} must be two positive numbers (a, b), got {value}")


@register("time_sampler", "beta_gap")
@attrs.define(frozen=True, kw_only=True)
class BetaGap:
    """A share on the diagonal; off it, t - s = g * Beta(a, b) and s ~ U(0, 1 - (t - s)).

    Shapes where training effort goes: Beta(1, 2) with g = 1 is uniform on the triangle;
    Beta(2, 1) favours long jumps (better 1-step samples), Beta(1, 3) short ones.
    g is `gap(step)`: `max_gap`, reached from `initial_gap` over `anneal_steps` steps.
    """

    diagonal_fraction: float = attrs.field(default=0.5, validator=unit_interval)
    concentration: tuple[float, float] = attrs.field(default=(1.0, 2.0), converter=tuple, validator=_positive_pair)
    max_gap: float = attrs.field(default=1.0, validator=unit_interval)
    initial_gap: float = attrs.field(default=0.0, validator=unit_interval)
    anneal_steps: int = attrs.field(default=0, validator=non_negative_integer)

    def gap(self, step: int) -> float:
        """The largest gap allowed at `step` (see `max_gap` in common.py)."""
        return max_gap(step, initial=self.initial_gap, final=self.max_gap, anneal_steps=self.anneal_steps)

    def __call__(self, draw: Draw) -> TimeSample:
        n_diag = diagonal_count(draw.n, self.diagonal_fraction)
        quantiles = beta_quantile(uniform(draw.n - n_diag, draw.generator, draw.dtype), *self.concentration)
        s, t = place_gaps(self.gap(draw.step) * quantiles, draw.generator)
        return assemble(uniform(n_diag, draw.generator, draw.dtype), s, t, draw.device)
