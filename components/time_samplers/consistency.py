"""Consistency training's discretisation: adjacent noise levels of a growing Karras grid."""

import math

import attrs
import torch

from flowmap_components.interpolants.noise_level import time_at_noise_level
from flowmap_core.protocols import Draw, Interpolant, TimeSample
from flowmap_core.registry import register
from flowmap_core.validators import finite, optional, positive, positive_integer

GROWTHS = ("ct", "ict", "fixed")


def _growth(instance: "ConsistencySchedule", attribute: attrs.Attribute, value: str) -> None:
    if value not in GROWTHS:
        raise ValueError(f"ConsistencySchedule.growth must be one of {', '.join(map(repr, GROWTHS))}, got {value!r}")


def levels_to_times(interpolant: Interpolant | None, sigmas: torch.Tensor) -> torch.Tensor:
    """The times whose noise level alpha / beta is each sigma (`components.interpolants.noise_level`)."""
    if interpolant is None:
        raise ValueError(
            "this time sampler draws noise levels and turns them into times through the run's interpolant; "
            "this Draw carries none (pass Draw(..., interpolant=...))"
        )
    return time_at_noise_level(interpolant, sigmas)


@register("time_sampler", "consistency")
@attrs.define(frozen=True, kw_only=True)
class ConsistencySchedule:
    """t = 1; (s, u) adjacent levels (sigma_{n+1}, sigma_n) of N(k) Karras noise levels.

    At training step k of the run's K steps, N(k) is, with `growth`
        'ct'  (Song et al. 2023): N(k) = ceil(sqrt(k / K ((s1 + 1)^2 - s0^2) + s0^2) - 1) + 1,
        'ict' (Song & Dhariwal 2023): N(k) = min(s0 2^floor(k / K'), s1) + 1,
              K' = floor(K / (log2 floor(s1 / s0) + 1)),
        'fixed' (consistency distillation's fixed grid, N = 18 in Song et al. 2023):
              N(k) = s1 at every step (the 'ct' formula with s0 = s1 gives s1 + 1 after step 0),
    and sigma_i = (sigma_min^(1/rho) + (i - 1)/(N - 1) (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho.
    n is uniform in 1..N-1, or with `level_mean` set (iCT's lognormal levels) drawn with
    p(n) proportional to erf((ln sigma_{n+1} - mean) / (sqrt 2 std)) - erf((ln sigma_n - mean) / (sqrt 2 std)).
    Noise levels of the variance-exploding form x1 + sigma x0 become times of the run's
    interpolant (the Draw's) where alpha(s) / beta(s) = sigma, since x_s / beta(s) =
    x1 + sigma x0; under the linear interpolant s = 1 / (1 + sigma). The student sits at
    the noisier s = time(sigma_{n+1}) and the teacher at u = time(sigma_n) > s. No
    diagonal rows.
    """

    initial_levels: int = attrs.field(default=2, validator=positive_integer)
    final_levels: int = attrs.field(default=150, validator=positive_integer)
    sigma_min: float = attrs.field(default=0.002, validator=positive)
    sigma_max: float = attrs.field(default=80.0, validator=positive)
    rho: float = attrs.field(default=7.0, validator=positive)
    growth: str = attrs.field(default="ct", validator=_growth)
    level_mean: float | None = attrs.field(default=None, validator=optional(finite))
    level_std: float = attrs.field(default=2.0, validator=positive)

    def levels(self, step: int, total_steps: int) -> int:
        """N(k), the number of noise levels at training step k of K."""
        s0, s1 = self.initial_levels, self.final_levels
        if self.growth == "fixed":
            return s1
        if self.growth == "ict":
            period = max(int(total_steps // (math.log2(s1 // s0) + 1)), 1)
            return min(s0 * 2 ** int(min(step, total_steps) // period), s1) + 1
        k = min(step, total_steps) / max(total_steps, 1)
        return math.ceil(math.sqrt(k * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1) + 1

    def sigmas(self, levels: int, dtype: torch.dtype) -> torch.Tensor:
        """sigma_1 < ... < sigma_N (Karras et al. 2022)."""
        i = torch.arange(levels, dtype=dtype) / max(levels - 1, 1)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        return (lo + i * (hi - lo)) ** self.rho

    def level_probabilities(self, sigmas: torch.Tensor) -> torch.Tensor:
        """p(n) for n = 1..N-1: uniform, or the lognormal mass between sigma_n and sigma_{n+1}."""
        if self.level_mean is None:
            return torch.full_like(sigmas[1:], 1 / (len(sigmas) - 1))
        cdf = torch.erf((torch.log(sigmas) - self.level_mean) / (math.sqrt(2) * self.level_std))
        mass = cdf[1:] - cdf[:-1]
        return mass / mass.sum()

    def __call__(self, draw: Draw) -> TimeSample:
        on = draw.generator.device
        sigmas = self.sigmas(self.levels(draw.step, draw.total_steps), draw.dtype).to(on)
        if self.level_mean is None:
            index = torch.randint(0, len(sigmas) - 1, (draw.n,), generator=draw.generator, device=on)
        else:
            probabilities = self.level_probabilities(sigmas)
            index = torch.multinomial(probabilities, draw.n, replacement=True, generator=draw.generator)
        times = levels_to_times(draw.interpolant, sigmas.cpu())
        s = times[index.cpu() + 1].to(draw.device)
        u = times[index.cpu()].to(draw.device)
        return TimeSample(s=s, t=torch.ones_like(s), n_diagonal=0, u=u)
