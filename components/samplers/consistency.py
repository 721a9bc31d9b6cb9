"""Multistep consistency sampling: jump to the data, re-noise to the next time, repeat."""

import attrs
import torch
from torch import Tensor

from flowmap_core.flow_map import batch_times
from flowmap_core.protocols import FlowMapLike, Interpolant
from flowmap_core.registry import register
from flowmap_core.sampling import Samples


@register("sampler", "consistency")
@attrs.define(frozen=True, kw_only=True)
class ConsistencySampler:
    """x1 = X_{0,1}(x0); then for s_i = i / steps: x1 = X_{s_i,1}(alpha(s_i) z + beta(s_i) x1), z fresh noise.

    Song et al. (2023), Algorithm 1, in this library's time. Works for single-time maps
    (consistency models), which jump only to t = 1; `steps` network evaluations.
    """

    @torch.no_grad()
    def __call__(
        self, X: FlowMapLike, x0: Tensor, steps: int, *, interpolant: Interpolant, generator: torch.Generator
    ) -> Samples:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        one = batch_times(1.0, x0)
        x1 = X(x0, batch_times(0.0, x0), one)
        for i in range(1, steps):
            s = batch_times(i / steps, x0)
            z = torch.randn(x0.shape, generator=generator, device=generator.device, dtype=x0.dtype).to(x0.device)
            x1 = X(interpolant.interpolate(z, x1, s).xt, s, one)
        return Samples(x=x1, nfe=steps)
