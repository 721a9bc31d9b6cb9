"""A single-time map X_{s,1}: the consistency function of consistency models."""

from collections.abc import Callable, Mapping

import attrs
import torch
from torch import Tensor

from flowmap_core.protocols import ExactFlow
from flowmap_core.registry import register
from flowmap_core.typing import Data, Heads, Times, typechecked


@register("parameterisation", "single_time")
@attrs.define(frozen=True, kw_only=True)
class SingleTime:
    """f(x, s) = X_{s,1}(x) = x + (1 - s) v_s(x): only jumps to the data end (t = 1).

    The consistency function of consistency models (Song et al. 2023), in this library's
    time (s = 0 noise, 1 data): f(x, 1) = x holds by construction. The backbone is read
    at (x, s, 1) whatever t is asked for, so V_{s,t} = V_{s,1}; only t = 1 is meaningful,
    and its "velocity" V_{s,s} is the mean velocity to the data, not b_s. Train it with
    t = 1 (`time_sampler.consistency`) and sample it with `sampler.consistency`.
    """

    heads: int = attrs.field(default=1, init=False)
    fixed_t: float | None = attrs.field(default=1.0, init=False)

    @typechecked
    def mean_velocity(
        self, net: Callable[..., Tensor], x: Data, s: Times, t: Times, cond: Mapping[str, Tensor]
    ) -> Data:
        return net(x, s, torch.ones_like(s), **cond)[:, 0]

    def mean_velocity_tangent(
        self,
        net_tangent: Callable[..., tuple[Tensor, Tensor]],
        x: Tensor,
        s: Tensor,
        t: Tensor,
        dx: Tensor | None,
        ds: Tensor | None,
        dt: Tensor | None,
        cond: Mapping[str, Tensor],
    ) -> tuple[Tensor, Tensor]:
        """V_{s,1}(x) and its derivative along (dx, ds): t is fixed at 1, so dt does not enter."""
        out, tangent = net_tangent(x, s, torch.ones_like(s), dx, ds, None, **cond)
        return out[:, 0], tangent[:, 0]

    @typechecked
    def represent(self, exact: ExactFlow, x: Data, s: Times, t: Times) -> Heads:
        return exact.mean_velocity(x, s, torch.ones_like(s)).unsqueeze(1)
