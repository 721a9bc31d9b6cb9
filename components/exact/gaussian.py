"""Closed-form ground truth: base N(0, I) to data N(m, diag(std^2)) under an affine interpolant."""

import attrs
import torch
from torch import Tensor

from flowmap_components.exact import mean_velocity
from flowmap_components.interpolants.linear import Linear
from flowmap_core.flow_map import expand_time
from flowmap_core.protocols import Interpolant
from flowmap_core.registry import register
from flowmap_core.typing import Data, Times, typechecked


def _positive(instance: "GaussianFlow", attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    if any(v <= 0 for v in value):
        raise ValueError(f"GaussianFlow.std must be positive in every dimension, got {value}")


def _same_length(instance: "GaussianFlow", attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    if len(value) != len(instance.mean) or not value:
        raise ValueError(
            f"GaussianFlow.std has {len(value)} entries but mean has {len(instance.mean)}; "
            "give one mean and one std per dimension (at least one)"
        )


@register("exact", "gaussian")
@attrs.define(frozen=True, kw_only=True)
class GaussianFlow:
    """N(0, I) -> N(mean, diag(std^2)): exact affine velocity and flow map.

    Under `x_t = alpha x0 + beta x1`, x_t ~ N(beta m, nu_t) per dimension with
    nu_t = alpha^2 + beta^2 std^2. The velocity E[dx_t/dt | x_t = x] is
        b_t(x) = beta' m + (alpha alpha' + beta beta' std^2) / nu_t * (x - beta m),
    and the flow map keeps the standardised coordinate fixed:
        X_{s,t}(x) = beta_t m + sqrt(nu_t / nu_s) (x - beta_s m).
    """

    mean: tuple[float, ...] = attrs.field(default=(1.0, -0.5), converter=tuple)
    std: tuple[float, ...] = attrs.field(default=(0.5, 1.5), converter=tuple, validator=[_same_length, _positive])
    interpolant: Interpolant = attrs.field(factory=Linear)

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (len(self.mean),)

    def _moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        m = torch.tensor(self.mean, dtype=x.dtype, device=x.device)
        var = torch.tensor(self.std, dtype=x.dtype, device=x.device) ** 2
        return m, var

    def _variance(self, t: Tensor, x: Tensor) -> Tensor:
        c = self.interpolant.coefficients(t)
        _, var = self._moments(x)
        return expand_time(c.alpha, x) ** 2 + expand_time(c.beta, x) ** 2 * var

    @typechecked
    def velocity(self, x: Data, t: Times) -> Data:
        c = self.interpolant.coefficients(t)
        m, var = self._moments(x)
        a, b = expand_time(c.alpha, x), expand_time(c.beta, x)
        a_dot, b_dot = expand_time(c.alpha_dot, x), expand_time(c.beta_dot, x)
        return b_dot * m + (a * a_dot + b * b_dot * var) / (a**2 + b**2 * var) * (x - b * m)

    @typechecked
    def flow_map(self, x: Data, s: Times, t: Times) -> Data:
        m, _ = self._moments(x)
        beta_s = expand_time(self.interpolant.coefficients(s).beta, x)
        beta_t = expand_time(self.interpolant.coefficients(t).beta, x)
        scale = torch.sqrt(self._variance(t, x) / self._variance(s, x))
        return beta_t * m + scale * (x - beta_s * m)

    @typechecked
    def mean_velocity(self, x: Data, s: Times, t: Times) -> Data:
        return mean_velocity.from_flow_map(self, x, s, t)

    def sample_data(self, n: int, *, generator: torch.Generator, dtype: torch.dtype = torch.float64) -> Tensor:
        z = torch.randn((n, *self.data_shape), generator=generator, device=generator.device, dtype=dtype)
        m, var = self._moments(z)
        return m + var.sqrt() * z
