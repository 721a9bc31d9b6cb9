"""A central finite difference: three evaluations of the student, O(h^2) accurate."""

import attrs
import torch
from torch import Tensor, nn

from flowmap_components.derivatives.precision import check_precision, computed_in
from flowmap_core.protocols import FlowMapLike
from flowmap_core.registry import register
from flowmap_core.validators import positive_finite


def _has_active_dropout(net: object) -> bool:
    module = getattr(net, "_orig_mod", net)
    return isinstance(module, nn.Module) and any(
        isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 and m.training for m in module.modules()
    )


@register("derivative", "finite_difference")
@attrs.define(frozen=True, kw_only=True)
class FiniteDifference:
    """dV = (V(p + h d) - V(p - h d)) / (2 h) at p = (x, s, t), d = (dx, ds, dt), beside V(p).

    An approximation with error O(h^2) (the step `h` is in time units; x moves by h dx),
    for backbones without a tangent pass, at three forward passes. The difference is
    taken with autocast off when `precision` is 'float32' (a bfloat16 difference over
    h = 1e-3 would be noise). A backbone with active dropout gets the same mask in the
    three evaluations (the random state is restored before each), which a compiled step
    cannot do: there it needs dropout 0.
    """

    step: float = attrs.field(default=1e-3, validator=positive_finite)
    precision: str = attrs.field(default="float32", validator=check_precision)
    compiles: bool = attrs.field(default=True, init=False)
    exact: bool = attrs.field(default=False, init=False)

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
        h = self.step

        def at(sign: float) -> tuple[Tensor, Tensor, Tensor]:
            return tuple(p if d is None else p + (sign * h) * d for p, d in ((x, dx), (s, ds), (t, dt)))

        with computed_in(self.precision, x):
            if not _has_active_dropout(X.net):
                return X.mean_velocity(x, s, t), (X.mean_velocity(*at(1.0)) - X.mean_velocity(*at(-1.0))) / (2 * h)
            if torch.compiler.is_compiling():
                raise RuntimeError(
                    "derivative.finite_difference cannot give its three evaluations one dropout mask inside a "
                    "compiled step: set the backbone's dropout to 0, or train.compile = 'backbone'"
                )
            devices = [x.device] if x.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                V = X.mean_velocity(x, s, t)
            with torch.random.fork_rng(devices=devices):
                plus = X.mean_velocity(*at(1.0))
            minus = X.mean_velocity(*at(-1.0))
            return V, (plus - minus) / (2 * h)
