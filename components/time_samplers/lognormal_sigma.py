"""Times from a lognormal noise level: EDM's training distribution and sCM's time proposal."""

import attrs
import torch

from flowmap_components.time_samplers.consistency import levels_to_times
from flowmap_core.protocols import Draw, TimeSample
from flowmap_core.registry import register
from flowmap_core.validators import finite, positive


@register("time_sampler", "lognormal_sigma")
@attrs.define(frozen=True, kw_only=True)
class LognormalSigma:
    """t = 1; s the time whose noise level alpha(s) / beta(s) is sigma, log(sigma_d sigma) ~ N(p_mean, p_std^2).

    sCM's proposal (Lu & Song 2024, Sec. 4.2 and Algorithm 1): log(sigma_d tan t) ~
    N(P_mean, P_std^2), tan t TrigFlow's noise level of x_t / sigma_d, i.e. ours of x_s
    (`parameterisation.trigflow`): under `interpolant.trigonometric` alpha / beta =
    cot(pi s / 2) = tan t, so s = 1 - 2 t / pi. EDM's ln(sigma) ~ N(P_mean, P_std^2) is the
    same with sigma_d = 1. Any interpolant whose noise level falls monotonically turns
    levels into times (the Draw's; `components.interpolants.noise_level`). s < 1 always
    (sigma > 0); no diagonal rows. Defaults: sCM's CIFAR-10 (P_mean = -1.0, P_std = 1.4,
    sigma_d = 0.5).
    """

    p_mean: float = attrs.field(default=-1.0, validator=finite)
    p_std: float = attrs.field(default=1.4, validator=positive)
    sigma_d: float = attrs.field(default=0.5, validator=positive)

    def __call__(self, draw: Draw) -> TimeSample:
        tau = self.p_mean + self.p_std * torch.randn(
            draw.n, generator=draw.generator, device=draw.generator.device, dtype=torch.float64
        )
        s = levels_to_times(draw.interpolant, torch.exp(tau).cpu() / self.sigma_d).to(draw.device, draw.dtype)
        return TimeSample(s=s, t=torch.ones_like(s), n_diagonal=0)
