"""An interpolant from user-given schedules alpha(t), beta(t); derivatives by forward-mode AD."""

from collections.abc import Callable

import attrs
import torch
from torch import Tensor

from flowmap_components.interpolants.affine import AffineInterpolant
from flowmap_core.autodiff import jvp
from flowmap_core.protocols import Coefficients
from flowmap_core.registry import register

Schedule = Callable[[Tensor], Tensor]

_BOUNDARY = {"alpha": (1.0, 0.0), "beta": (0.0, 1.0)}


def _check_boundary(instance: "General", attribute: attrs.Attribute, fn: Schedule) -> None:
    if not callable(fn):
        raise TypeError(f"General.{attribute.name} must be a callable t -> tensor, got {fn!r}")
    at_0, at_1 = _BOUNDARY[attribute.name]
    values = fn(torch.tensor([0.0, 1.0], dtype=torch.float64))
    if not isinstance(values, Tensor) or values.shape != (2,):
        raise TypeError(
            f"General.{attribute.name} must map a (batch,) tensor of times to a (batch,) tensor elementwise"
        )
    got_0, got_1 = values.tolist()
    if abs(got_0 - at_0) > 1e-9 or abs(got_1 - at_1) > 1e-9:
        raise ValueError(
            f"General.{attribute.name} must satisfy {attribute.name}(0) = {at_0:g} and "
            f"{attribute.name}(1) = {at_1:g} (t = 0 is noise, t = 1 is data); got {got_0:g} and {got_1:g}"
        )


@register("interpolant", "general")
@attrs.define(frozen=True, kw_only=True)
class General(AffineInterpolant):
    """x_t = alpha(t) x0 + beta(t) x1 for any differentiable elementwise alpha, beta."""

    alpha: Schedule = attrs.field(validator=_check_boundary)
    beta: Schedule = attrs.field(validator=_check_boundary)

    def coefficients(self, t: Tensor) -> Coefficients:
        ones = torch.ones_like(t)
        alpha, alpha_dot = jvp(self.alpha, (t,), (ones,))
        beta, beta_dot = jvp(self.beta, (t,), (ones,))
        return Coefficients(alpha=alpha, beta=beta, alpha_dot=alpha_dot, beta_dot=beta_dot)
