"""The Euler parameterisation: the backbone's output is the mean velocity itself."""

from collections.abc import Callable, Mapping

import attrs
from torch import Tensor

from flowmap_core.protocols import ExactFlow
from flowmap_core.registry import register
from flowmap_core.typing import Data, Heads, Times, typechecked


@register("parameterisation", "euler")
@attrs.define(frozen=True, kw_only=True)
class Euler:
    """X_{s,t}(x) = x + (t - s) v_{s,t}(x), with v the backbone's single output head."""

    heads: int = attrs.field(default=1, init=False)
    fixed_t: float | None = attrs.field(default=None, init=False)

    @typechecked
    def mean_velocity(
        self, net: Callable[..., Tensor], x: Data, s: Times, t: Times, cond: Mapping[str, Tensor]
    ) -> Data:
        return net(x, s, t, **cond)[:, 0]

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
        """V_{s,t}(x) and its derivative along (dx, ds, dt): the single head's value and tangent."""
        out, tangent = net_tangent(x, s, t, dx, ds, dt, **cond)
        return out[:, 0], tangent[:, 0]

    @typechecked
    def represent(self, exact: ExactFlow, x: Data, s: Times, t: Times) -> Heads:
        return exact.mean_velocity(x, s, t).unsqueeze(1)
