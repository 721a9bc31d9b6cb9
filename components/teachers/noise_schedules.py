"""The noise schedules of pretrained diffusion and flow models, as frames our points map into.

Our point at time s is x = alpha(s) x0 + beta(s) x1 (x0 noise, x1 data). A pretrained model
reads points of its own form x_m = a x1 + sigma eps at a timestep of its own. Every schedule
here is one frame: x_m = scale x with a = scale beta and sigma = scale alpha, so only the
noise-to-signal ratio rho = alpha / beta picks the model's timestep.

- `DDPM` (variance preserving, discrete levels; DDPM, DDIM, Euler, DPM-Solver schedulers):
  a^2 + sigma^2 = 1, timestep tau where the level table's log-SNR log(abar / (1 - abar))
  equals -2 log rho, linear in log-SNR between levels.
- `EDM` (Karras et al. 2022, diffusers' EDM schedulers): a = 1, sigma = rho, timestep
  c_noise = log(sigma) / 4, and the preconditioned denoiser
  D = c_skip x_m + c_out F(c_in x_m) with c_skip = sd^2 / (sigma^2 + sd^2),
  c_out = +-sigma sd / sqrt(sigma^2 + sd^2), c_in = 1 / sqrt(sigma^2 + sd^2).
- `RectifiedFlow` (SD3, Flux; FlowMatchEulerDiscreteScheduler): x_m = (1 - sigma) x1 + sigma eps,
  so sigma = alpha / (alpha + beta), timestep = sigma times the number of training steps.
"""

import math

import attrs
import torch
from torch import Tensor


@attrs.frozen
class Frame:
    """A batch of points in a model's frame: x_m = scale x = a x1 + sigma eps, read at `timestep`."""

    scale: Tensor
    a: Tensor
    sigma: Tensor
    timestep: Tensor


@attrs.frozen
class DDPM:
    """Variance-preserving discrete levels with cumulative products `alphas_cumprod` (tau = 0 nearest data)."""

    alphas_cumprod: tuple[float, ...] = attrs.field(converter=tuple)
    kind = "ddpm"

    @property
    def rho_range(self) -> tuple[float, float]:
        first, last = self.alphas_cumprod[0], self.alphas_cumprod[-1]
        return math.sqrt((1 - first) / first), math.sqrt((1 - last) / last)

    def frame(self, alpha: Tensor, beta: Tensor) -> Frame:
        scale = torch.rsqrt(alpha**2 + beta**2)
        abar = torch.tensor(self.alphas_cumprod, dtype=torch.float64, device=alpha.device)
        levels = torch.log(abar / (1 - abar)).flip(0)  # increasing in log-SNR
        log_snr = (2 * (torch.log(beta) - torch.log(alpha))).to(torch.float64).clamp(levels[0], levels[-1])
        upper = torch.searchsorted(levels, log_snr).clamp(1, len(levels) - 1)
        weight = (log_snr - levels[upper - 1]) / (levels[upper] - levels[upper - 1])
        flipped = (upper - 1) + weight  # a fractional index into the flipped table
        timestep = (len(levels) - 1 - flipped).to(alpha.dtype)
        return Frame(scale=scale, a=scale * beta, sigma=scale * alpha, timestep=timestep)

    def precondition(self, x_m: Tensor, frame: Frame) -> Tensor:
        return x_m

    def denoised(self, x_m: Tensor, out: Tensor, frame: Frame, prediction: str) -> tuple[Tensor, str]:
        return out, prediction


@attrs.frozen
class EDM:
    """EDM's sigma levels in [sigma_min, sigma_max] with its preconditioning at `sigma_data`."""

    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    kind = "edm"

    @property
    def rho_range(self) -> tuple[float, float]:
        return self.sigma_min, self.sigma_max

    def frame(self, alpha: Tensor, beta: Tensor) -> Frame:
        sigma = alpha / beta
        return Frame(scale=1 / beta, a=torch.ones_like(beta), sigma=sigma, timestep=0.25 * torch.log(sigma))

    def precondition(self, x_m: Tensor, frame: Frame) -> Tensor:
        return x_m * _expand(torch.rsqrt(frame.sigma**2 + self.sigma_data**2), x_m)

    def denoised(self, x_m: Tensor, out: Tensor, frame: Frame, prediction: str) -> tuple[Tensor, str]:
        """D(x_m) = c_skip x_m + c_out F: the model's output turned into a data prediction."""
        sigma, sd = _expand(frame.sigma, x_m), self.sigma_data
        c_out = sigma * sd * torch.rsqrt(sigma**2 + sd**2)
        sign = 1.0 if prediction == "epsilon" else -1.0
        return sd**2 / (sigma**2 + sd**2) * x_m + sign * c_out * out, "sample"


@attrs.frozen
class RectifiedFlow:
    """x_m = (1 - sigma) x1 + sigma eps, read at timestep sigma * num_train_timesteps."""

    num_train_timesteps: int = 1000
    kind = "rectified_flow"

    @property
    def rho_range(self) -> tuple[float, float]:
        return 0.0, math.inf

    def frame(self, alpha: Tensor, beta: Tensor) -> Frame:
        scale = 1 / (alpha + beta)
        sigma = scale * alpha
        return Frame(scale=scale, a=scale * beta, sigma=sigma, timestep=sigma * self.num_train_timesteps)

    def precondition(self, x_m: Tensor, frame: Frame) -> Tensor:
        return x_m

    def denoised(self, x_m: Tensor, out: Tensor, frame: Frame, prediction: str) -> tuple[Tensor, str]:
        return out, prediction


Schedule = DDPM | EDM | RectifiedFlow

PREDICTIONS = {
    "epsilon": ("ddpm", "edm", "rectified_flow"),
    "sample": ("ddpm", "rectified_flow"),
    "v_prediction": ("ddpm", "edm"),
    "flow": ("rectified_flow",),
}


def data_and_noise(prediction: str, x_m: Tensor, out: Tensor, frame: Frame) -> tuple[Tensor, Tensor]:
    """The model's estimates of x1 and eps from its output under `prediction`, given
    x_m = a x1 + sigma eps: epsilon (eps), sample (x1), v_prediction (v = a eps - sigma x1,
    variance preserving) or flow (u = eps - x1, rectified flow)."""
    a, sigma = _expand(frame.a, x_m), _expand(frame.sigma, x_m)
    if prediction == "epsilon":
        return (x_m - sigma * out) / a, out
    if prediction == "sample":
        return out, (x_m - a * out) / sigma
    if prediction == "v_prediction":
        return a * x_m - sigma * out, sigma * x_m + a * out
    if prediction == "flow":
        return x_m - sigma * out, x_m + a * out
    raise ValueError(f"unknown prediction type {prediction!r}: one of {', '.join(PREDICTIONS)}")


def _expand(v: Tensor, x: Tensor) -> Tensor:
    return v.reshape(v.shape[0], *([1] * (x.dim() - 1)))
