"""`FlowMap`: a backbone read through a parameterisation, as the objects objectives use.

    X_{s,t}(x) = x + (t - s) V_{s,t}(x),        b_t(x) = V_{t,t}(x)

(the Euler form of DESIGN.md; `V` comes from the parameterisation). A `FlowMap` binds
the network, the parameterisation and the batch's conditioning (labels, guidance scale),
so objectives and samplers call `X(x, s, t)` without knowing any of them.
"""

from collections.abc import Callable, Mapping

import attrs
import torch
from torch import Tensor

from flowmap_core import records
from flowmap_core.protocols import Parameterisation
from flowmap_core.typing import Data, Times, typechecked


def expand_time(t: Tensor, x: Tensor) -> Tensor:
    """Reshape times `(batch,)` to broadcast against `x` `(batch, *shape)`."""
    return t.reshape(t.shape[0], *([1] * (x.dim() - 1)))


@records.traceable
@attrs.frozen
class FlowMap:
    """The flow map of `net` under `parameterisation`, for a batch with conditioning `cond`.

    `cond` holds the network's keyword inputs, one row per example, or 0-dimensional
    tensors that apply to every example (for sampling: one class, one guidance scale).
    """

    net: Callable[..., Tensor]
    parameterisation: Parameterisation
    cond: Mapping[str, Tensor] = attrs.field(factory=dict)

    @typechecked
    def __call__(self, x: Data, s: Times, t: Times) -> Data:
        """X_{s,t}(x)."""
        return x + expand_time(t - s, x) * self.mean_velocity(x, s, t)

    @typechecked
    def mean_velocity(self, x: Data, s: Times, t: Times) -> Data:
        """V_{s,t}(x) = (X_{s,t}(x) - x) / (t - s), the velocity of the Euler form."""
        return self.parameterisation.mean_velocity(self.net, x, s, t, self._cond(x))

    def mean_velocity_tangent(
        self, x: Tensor, s: Tensor, t: Tensor, dx: Tensor | None, ds: Tensor | None, dt: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """`(V_{s,t}(x), dV)` along the tangent (dx, ds, dt) (None: zero), by the backbone's
        explicit tangent pass (`HasTangentPass`) read through the parameterisation's
        `mean_velocity_tangent`. Raises `TypeError` naming what lacks one."""
        missing = tangent_pass_missing(self.net, self.parameterisation)
        if missing:
            raise TypeError(missing)
        return self.parameterisation.mean_velocity_tangent(self.net.tangent, x, s, t, dx, ds, dt, self._cond(x))

    def _cond(self, x: Tensor) -> dict[str, Tensor]:
        return {k: v.expand(x.shape[0]) if v.dim() == 0 else v for k, v in self.cond.items()}

    @typechecked
    def velocity(self, x: Data, t: Times) -> Data:
        """b_t(x) = V_{t,t}(x), the probability-flow velocity (the diagonal of the map)."""
        return self.mean_velocity(x, t, t)

    def rows(self, index: slice) -> "FlowMap":
        """The same map with its conditioning restricted to a range of rows."""
        return records.evolve(self, cond={k: v[index] if v.dim() else v for k, v in self.cond.items()})

    def with_cond(self, **cond: Tensor) -> "FlowMap":
        """The same map with other conditioning tensors (one row per example)."""
        return records.evolve(self, cond=cond)


def tangent_pass_missing(net: Callable[..., Tensor], parameterisation: Parameterisation) -> str | None:
    """Why `net` under `parameterisation` has no explicit tangent pass (None if it has one)."""
    module = getattr(net, "_orig_mod", net)  # a torch.compile'd module: its original
    if not callable(getattr(module, "tangent", None)):
        return (
            f"the backbone {type(module).__name__} has no explicit tangent pass (a `tangent` method, see "
            "flowmap_core.protocols.HasTangentPass); use @derivative.forward_ad() or @derivative.finite_difference()"
        )
    if not callable(getattr(parameterisation, "mean_velocity_tangent", None)):
        return (
            f"the parameterisation {type(parameterisation).__name__} has no mean_velocity_tangent; "
            "use @derivative.forward_ad() or @derivative.finite_difference()"
        )
    return None


def batch_times(value: float | Tensor, x: Tensor) -> Tensor:
    """A `(batch,)` time tensor on x's device and dtype from a float or a tensor."""
    if isinstance(value, Tensor) and value.dim() == 1:
        return value.to(device=x.device, dtype=x.dtype)
    return torch.full((x.shape[0],), float(value), device=x.device, dtype=x.dtype)
