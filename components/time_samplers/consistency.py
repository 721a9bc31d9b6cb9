"""Consistency training's discretisation: adjacent noise levels of a growing Karras grid."""

import math

import attrs
import torch

from flowmap_core.protocols import Draw, TimeSample
from flowmap_core.registry import register
from flowmap_core.validators import positive


def sigma_to_time(sigma: torch.Tensor) -> torch.Tensor:
    """The time s of the linear interpolant whose point, divided by s, is x1 + sigma x0:
    (1 - s) x0 + s x1 = s (x1 + sigma x0) gives s = 1 / (1 + sigma)."""
    return 1 / (1 + sigma)


@register("time_sampler", "consistency")
@attrs.define(frozen=True, kw_only=True)
class ConsistencySchedule:
    """t = 1; (s, u) adjacent levels (sigma_{n+1}, sigma_n) of N(k) Karras noise levels.

    Song et al. (2023), consistency training: at training step k of the run's K steps,
        N(k) = ceil(sqrt(k / K ((s1 + 1)^2 - s0^2) + s0^2) - 1) + 1,
        sigma_i = (sigma_min^(1/rho) + (i - 1)/(N - 1) (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho,
    n uniform in 1..N-1. Noise levels of the variance-exploding form x1 + sigma x0 become
    times of the linear interpolant by s = 1 / (1 + sigma), so the student sits at the
    noisier s = time(sigma_{n+1}) and the teacher at u = time(sigma_n) > s. No diagonal rows.
    """

    initial_levels: int = 2
    final_levels: int = 150
    sigma_min: float = attrs.field(default=0.002, validator=positive)
    sigma_max: float = attrs.field(default=80.0, validator=positive)
    rho: float = attrs.field(default=7.0, validator=positive)

    def levels(self, step: int, total_steps: int) -> int:
        """N(k), the number of noise levels at training step k of K."""
        k = min(step, total_steps) / max(total_steps, 1)
        s0, s1 = self.initial_levels, self.final_levels
        return math.ceil(math.sqrt(k * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1) + 1

    def sigmas(self, levels: int, dtype: torch.dtype) -> torch.Tensor:
        """sigma_1 < ... < sigma_N (Karras et al. 2022)."""
        i = torch.arange(levels, dtype=dtype) / max(levels - 1, 1)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        return (lo + i * (hi - lo)) ** self.rho

    def __call__(self, draw: Draw) -> TimeSample:
        on = draw.generator.device
        sigmas = self.sigmas(self.levels(draw.step, draw.total_steps), draw.dtype).to(on)
        index = torch.randint(0, len(sigmas) - 1, (draw.n,), generator=draw.generator, device=on)
        s = sigma_to_time(sigmas[index + 1]).to(draw.device)
        u = sigma_to_time(sigmas[index]).to(draw.device)
        return TimeSample(s=s, t=torch.ones_like(s), n_diagonal=0, u=u)
