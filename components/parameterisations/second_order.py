"""A second-order parameterisation with a velocity head and a residual head."""

from collections.abc import Callable, Mapping

import attrs
import torch
from torch import Tensor

from flowmap_core.flow_map import expand_time
from flowmap_core.protocols import ExactFlow
from flowmap_core.registry import register
from flowmap_core.typing import Data, Heads, Times, typechecked


@register("parameterisation", "second_order")
@attrs.define(frozen=True, kw_only=True)
class SecondOrder:
    """X_{s,t}(x) = x + (t - s) v_{s,s}(x) + (t - s)^2 / 2 r_{s,t}(x).

    Head 0 of the backbone, read on the diagonal (s, s), is the velocity v_{s,s} = b_s;
    head 1, read at (s, t), is the second-order residual r_{s,t}. The mean velocity is
    V_{s,t} = v_{s,s} + (t - s) / 2 r_{s,t}, so the tangent condition
    d/dt X_{s,t}|_{t=s} = b_s holds exactly. Costs two backbone calls per evaluation.
    """

    heads: int = attrs.field(default=2, init=False)
    fixed_t: float | None = attrs.field(default=None, init=False)

    @typechecked
    def mean_velocity(
        self, net: Callable[..., Tensor], x: Data, s: Times, t: Times, cond: Mapping[str, Tensor]
    ) -> Data:
        velocity = net(x, s, s, **cond)[:, 0]
        residual = net(x, s, t, **cond)[:, 1]
        return velocity + 0.5 * expand_time(t - s, x) * residual

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
        """V and its derivative along (dx, ds, dt), by the product rule on v_{s,s} + (t - s) / 2 r_{s,t}."""
        velocity, d_velocity = net_tangent(x, s, s, dx, ds, ds, **cond)
        residual, d_residual = net_tangent(x, s, t, dx, ds, dt, **cond)
        gap = expand_time(t - s, x)
        d_gap = (torch.zeros_like(t) if dt is None else dt) - (0.0 if ds is None else ds)
        V = velocity[:, 0] + 0.5 * gap * residual[:, 1]
        dV = d_velocity[:, 0] + 0.5 * (expand_time(d_gap, x) * residual[:, 1] + gap * d_residual[:, 1])
        return V, dV

    @typechecked
    def represent(self, exact: ExactFlow, x: Data, s: Times, t: Times) -> Heads:
        velocity = exact.velocity(x, s)
        gap = expand_time(t - s, x)
        safe_gap = torch.where(gap == 0, torch.ones_like(gap), gap)
        residual = torch.where(gap == 0, torch.zeros_like(x), 2 * (exact.mean_velocity(x, s, t) - velocity) / safe_gap)
        return torch.stack([velocity, residual], dim=1)
