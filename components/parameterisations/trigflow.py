"""TrigFlow's consistency function (Lu & Song 2024, sCM) as a single-time map."""

import math
from collections.abc import Callable, Mapping

import attrs
import torch
from torch import Tensor

from flowmap_core.flow_map import expand_time
from flowmap_core.protocols import ExactFlow
from flowmap_core.registry import register
from flowmap_core.typing import Data, Heads, Times, typechecked


def trig_coefficients(s: Tensor) -> tuple[Tensor, Tensor]:
    """(1 - beta(s)) / (1 - s) and alpha(s) / (1 - s) of the trigonometric interpolant
    (alpha = cos(pi s / 2), beta = sin(pi s / 2)), finite at s = 1: with a = 1 - s,
    1 - beta = 2 sin(pi a / 4)^2 and alpha = sin(pi a / 2), so the ratios are
    2 sin(pi a / 4) (pi / 4) sinc(a / 4) and (pi / 2) sinc(a / 2) (torch.sinc(x) = sin(pi x) / (pi x))."""
    a = 1 - s
    one_minus_beta = 2 * torch.sin(0.25 * math.pi * a) * (0.25 * math.pi) * torch.sinc(0.25 * a)
    alpha_ratio = 0.5 * math.pi * torch.sinc(0.5 * a)
    return one_minus_beta, alpha_ratio


def trig_coefficient_slopes(s: Tensor) -> tuple[Tensor, Tensor]:
    """d/ds of `trig_coefficients`, finite at s = 1. With a = 1 - s and A = (1 - beta) / a,
    B = alpha / a: dA/da = (pi^2 / 4) sinc(a / 2) - (pi^2 / 8) sinc(a / 4)^2, and dB/da =
    ((pi / 2) cos(pi a / 2) - B) / a, by its series sum_k (-1)^k (pi / 2)^(2k + 1) 2k a^(2k - 1) / (2k + 1)!
    (k = 1..4) below a = 0.1, where the difference cancels; d/ds = -d/da."""
    a = 1 - s
    dA = 0.25 * math.pi**2 * torch.sinc(0.5 * a) - 0.125 * math.pi**2 * torch.sinc(0.25 * a) ** 2
    small = a < 0.1
    series = sum(
        (-1) ** k * (0.5 * math.pi) ** (2 * k + 1) * 2 * k * a ** (2 * k - 1) / math.factorial(2 * k + 1)
        for k in range(1, 5)
    )
    wide = torch.where(small, torch.ones_like(a), a)
    direct = (0.5 * math.pi * torch.cos(0.5 * math.pi * wide) - 0.5 * math.pi * torch.sinc(0.5 * wide)) / wide
    return -dA, -torch.where(small, series, direct)


@register("parameterisation", "trigflow")
@attrs.define(frozen=True, kw_only=True)
class TrigFlow:
    """f(x, s) = X_{s,1}(x) = beta(s) x - alpha(s) F(x, s): sCM's f(x_t, t) = cos(t) x_t - sin(t) sigma_d F.

    Lu & Song (2024), Eq. 8 (TrigFlow's consistency function), in this library's variables:
    TrigFlow's time t runs from data (0) to noise (pi / 2), ours is s = 1 - 2 t / pi, so
    cos(t) = sin(pi s / 2) = beta(s) and sin(t) = alpha(s) of `interpolant.trigonometric`;
    its x_t / sigma_d (noise of std sigma_d) is our x_s (unit noise), so sigma_d drops out
    of the map. The backbone's one head is F, read at (x, s, 1); f(x, 1) = x holds by
    construction. In Euler form V_{s,1} = -((1 - beta) x + alpha F) / (1 - s), computed
    with ratios that stay finite at s = 1 (and their slopes, for the explicit tangent
    pass). Like `single_time` it defines X_{s,1} only: train it with t = 1 and sample it
    with `sampler.consistency`.
    """

    heads: int = attrs.field(default=1, init=False)
    fixed_t: float | None = attrs.field(default=1.0, init=False)

    @typechecked
    def mean_velocity(
        self, net: Callable[..., Tensor], x: Data, s: Times, t: Times, cond: Mapping[str, Tensor]
    ) -> Data:
        F = net(x, s, torch.ones_like(s), **cond)[:, 0]
        one_minus_beta, alpha_ratio = trig_coefficients(s)
        return -(expand_time(one_minus_beta, x) * x + expand_time(alpha_ratio, x) * F)

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
        """V_{s,1}(x) and its derivative along (dx, ds) (t is fixed at 1): with V = -(A x + B F),
        dV = -(A dx + B dF + ds (A' x + B' F)), A' and B' from `trig_coefficient_slopes`."""
        out, tangent = net_tangent(x, s, torch.ones_like(s), dx, ds, None, **cond)
        F, dF = out[:, 0], tangent[:, 0]
        A, B = (expand_time(c, x) for c in trig_coefficients(s))
        V = -(A * x + B * F)
        dV = -B * dF
        if dx is not None:
            dV = dV - A * dx
        if ds is not None:
            dA, dB = (expand_time(c * ds, x) for c in trig_coefficient_slopes(s))
            dV = dV - (dA * x + dB * F)
        return V, dV

    @typechecked
    def represent(self, exact: ExactFlow, x: Data, s: Times, t: Times) -> Heads:
        """F = -((1 - beta) / (1 - s) x + V_{s,1}(x)) / (alpha / (1 - s)), the inverse of `mean_velocity`."""
        one_minus_beta, alpha_ratio = trig_coefficients(s)
        V = exact.mean_velocity(x, s, torch.ones_like(s))
        return (-(expand_time(one_minus_beta, x) * x + V) / expand_time(alpha_ratio, x)).unsqueeze(1)
