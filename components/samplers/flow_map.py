"""k jumps of a two-time flow map along a uniform grid."""

import attrs
import torch
from torch import Tensor

from flowmap_core.protocols import FlowMapLike, Interpolant
from flowmap_core.registry import register
from flowmap_core.sampling import Samples, flow_map_sample


@register("sampler", "flow_map")
@attrs.define(frozen=True, kw_only=True)
class FlowMapSampler:
    """x_{k+1} = X_{t_k, t_{k+1}}(x_k) on t_k = k / steps: one network evaluation a step."""

    def __call__(
        self, X: FlowMapLike, x0: Tensor, steps: int, *, interpolant: Interpolant, generator: torch.Generator
    ) -> Samples:
        return flow_map_sample(X, x0, steps=steps)
