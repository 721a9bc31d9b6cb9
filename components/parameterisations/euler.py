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

    @typechecked
    def represent(self, exact: ExactFlow, x: Data, s: Times, t: Times) -> Heads:
        return exact.mean_velocity(x, s, t).unsqueeze(1)
