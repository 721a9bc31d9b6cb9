"""The explicit tangent pass: each backbone layer carries (h, dh) by its own tangent rule."""

import attrs
from torch import Tensor

from flowmap_components.derivatives.precision import check_precision, computed_in
from flowmap_core.flow_map import tangent_pass_missing
from flowmap_core.protocols import FlowMapLike
from flowmap_core.registry import register


@register("derivative", "tangent_pass")
@attrs.define(frozen=True, kw_only=True)
class TangentPass:
    """dV from the backbone's `tangent` method (`flowmap_core.protocols.HasTangentPass`): the
    forward pass and its derivative along (dx, ds, dt) as ordinary ops, layer by layer
    (`flowmap_components.backbones.tangent_rules`). Exact (equal to forward-mode AD up to float
    rounding), compiles whole, and skips what forward-mode AD computes for nothing (the
    tangents of biases, of inputs that do not move). Needs a backbone with a tangent pass
    (the MLP and the UNet have one) and a parameterisation with `mean_velocity_tangent`.
    """

    precision: str = attrs.field(default="float32", validator=check_precision)
    compiles: bool = attrs.field(default=True, init=False)
    exact: bool = attrs.field(default=True, init=False)

    def unavailable(self, X: FlowMapLike) -> str | None:
        return tangent_pass_missing(X.net, X.parameterisation)

    def __call__(
        self,
        X: FlowMapLike,
        x: Tensor,
        s: Tensor,
        t: Tensor,
        *,
        dx: Tensor | None = None,
        ds: Tensor | None = None,
        dt: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        with computed_in(self.precision, x):
            return X.mean_velocity_tangent(x, s, t, dx, ds, dt)
