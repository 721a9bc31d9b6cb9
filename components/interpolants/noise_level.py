"""Noise levels of an interpolant: the sigma of EDM-style methods, and the time that has it.

Diffusion and consistency models written in noise levels (Karras et al. 2022) place a
point at x1 + sigma x0. An interpolant's point divided by its data coefficient is that
form: x_s / beta(s) = x1 + (alpha(s) / beta(s)) x0, so the time s has the noise level

    sigma(s) = alpha(s) / beta(s),

which falls from infinity at s = 0 (noise) to 0 at s = 1 (data). Under the linear
interpolant sigma = (1 - s) / s and s = 1 / (1 + sigma); under the trigonometric one
sigma = cot(pi s / 2), TrigFlow's tan of its own time. Any other interpolant is inverted
by bisection in float64, after a check that its sigma falls monotonically.
"""

import torch
from torch import Tensor

from flowmap_core.protocols import Interpolant

_BISECTIONS = 64
_CHECK_POINTS = 1001


def noise_level(interpolant: Interpolant, s: Tensor) -> Tensor:
    """sigma(s) = alpha(s) / beta(s), the noise level of x_s / beta(s) = x1 + sigma x0."""
    c = interpolant.coefficients(s)
    return c.alpha / c.beta


def _check_monotone(interpolant: Interpolant) -> None:
    s = torch.linspace(0, 1, _CHECK_POINTS, dtype=torch.float64)[1:-1]
    c = interpolant.coefficients(s)
    if not ((c.alpha > 0).all() and (c.beta > 0).all()):
        raise ValueError(
            f"{type(interpolant).__name__} has alpha(s) <= 0 or beta(s) <= 0 inside (0, 1): noise levels "
            "sigma = alpha / beta are defined only for interpolants with positive coefficients"
        )
    ratio = c.alpha / c.beta
    if not (ratio[1:] < ratio[:-1]).all():
        raise ValueError(
            f"{type(interpolant).__name__}'s noise level alpha(s) / beta(s) does not fall monotonically on (0, 1): "
            "no time has a given level uniquely, so levels cannot be turned into times"
        )


def time_at_noise_level(interpolant: Interpolant, sigma: Tensor) -> Tensor:
    """The time s in (0, 1) with alpha(s) / beta(s) = sigma (> 0), for each entry of `sigma`.

    Bisection on [0, 1] in float64 (64 halvings reach the float64 spacing); the result
    has `sigma`'s dtype and device.
    """
    _check_monotone(interpolant)
    target = sigma.detach().to(device="cpu", dtype=torch.float64)
    if not (target > 0).all():
        raise ValueError(f"noise levels must be > 0, got a minimum of {target.min().item():g}")
    lo, hi = torch.zeros_like(target), torch.ones_like(target)
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        noisier = noise_level(interpolant, mid) > target
        lo, hi = torch.where(noisier, mid, lo), torch.where(noisier, hi, mid)
    return ((lo + hi) / 2).to(device=sigma.device, dtype=sigma.dtype)
