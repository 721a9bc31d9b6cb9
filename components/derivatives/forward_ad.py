"""Forward-mode automatic differentiation: exact, for any backbone."""

import attrs
from torch import Tensor

from flowmap_components.derivatives.precision import check_precision, computed_in
from flowmap_core.autodiff import jvp
from flowmap_core.protocols import FlowMapLike
from flowmap_core.registry import register


@register("derivative", "forward_ad")
@attrs.define(frozen=True, kw_only=True)
class ForwardAD:
    """dV by `torch.func.jvp` of the student's V_{s,t}(x) along (dx, ds, dt): exact, and needs
    nothing of the backbone. Dual tensors run op by op: a step with it does not compile
    whole in torch 2.13 (AOT autograd rejects forward-mode AD), so a compiled run compiles
    the backbone only. `precision` (see `flowmap_components.derivatives.precision`): 'float32'
    computes the JVP with autocast off, as published PyTorch ports of sCM and MeanFlow do.
    """

    precision: str = attrs.field(default="float32", validator=check_precision)
    compiles: bool = attrs.field(default=False, init=False)
    exact: bool = attrs.field(default=True, init=False)

    def unavailable(self, X: FlowMapLike) -> str | None:
        return None

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
        point = {"x": x, "s": s, "t": t}
        moving = {name: d for name, d in (("x", dx), ("s", ds), ("t", dt)) if d is not None}

        def V(*values: Tensor) -> Tensor:
            return X.mean_velocity(**{**point, **dict(zip(moving, values, strict=True))})

        with computed_in(self.precision, x):
            return jvp(V, [point[name] for name in moving], list(moving.values()))
