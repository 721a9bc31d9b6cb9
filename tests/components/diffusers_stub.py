"""A diffusers ModelMixin that predicts exactly for Gaussian data N(mean, std^2) per coordinate,
in the frame of a named noise schedule and prediction type: the ground truth that the
conversion of `teacher.diffusers` must turn into the closed-form drift."""

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn


class ExactGaussianModel(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        schedule: str = "ddpm",
        prediction: str = "epsilon",
        mean: float = 0.5,
        std: float = 1.5,
        alphas_cumprod: tuple[float, ...] = (),
        num_train_timesteps: int = 1000,
        sigma_data: float = 0.5,
    ):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # a parameter, so the model has a dtype and device

    def frame(self, timestep: Tensor) -> tuple[Tensor, Tensor]:
        """(a, sigma) of the model's points x_m = a x1 + sigma eps at `timestep`."""
        config = self.config
        if config.schedule == "ddpm":
            abar = torch.tensor(config.alphas_cumprod, dtype=torch.float64)
            log_snr = torch.log(abar / (1 - abar))
            low = timestep.floor().long().clamp(0, len(abar) - 2)
            weight = timestep.double() - low
            value = (1 - weight) * log_snr[low] + weight * log_snr[low + 1]
            return torch.sigmoid(value).sqrt(), torch.sigmoid(-value).sqrt()
        if config.schedule == "rectified_flow":
            sigma = timestep.double() / config.num_train_timesteps
            return 1 - sigma, sigma
        sigma = torch.exp(4 * timestep.double())  # EDM: c_noise = log(sigma) / 4
        return torch.ones_like(sigma), sigma

    def forward(self, sample: Tensor, timestep: Tensor) -> tuple[Tensor]:
        a, sigma = (v.to(sample.dtype).reshape(-1, *[1] * (sample.dim() - 1)) for v in self.frame(timestep))
        config = self.config
        x_m = sample * torch.sqrt(sigma**2 + config.sigma_data**2) if config.schedule == "edm" else sample
        m, var = config.mean, config.std**2
        x1 = m + a * var / (a**2 * var + sigma**2) * (x_m - a * m)
        eps = sigma / (a**2 * var + sigma**2) * (x_m - a * m)
        if config.schedule == "edm":  # F such that c_skip x_m + c_out F = x1
            sd = config.sigma_data
            c_skip, c_out = sd**2 / (sigma**2 + sd**2), sigma * sd / torch.sqrt(sigma**2 + sd**2)
            sign = 1.0 if config.prediction == "epsilon" else -1.0
            return (sign * (x1 - c_skip * x_m) / c_out,)
        out = {"epsilon": eps, "sample": x1, "v_prediction": a * eps - sigma * x1, "flow": eps - x1}
        return (out[config.prediction],)


def uniform_levels() -> tuple[float, ...]:
    """DDPM's linear beta schedule (1e-4 to 0.02, 1,000 levels) as cumulative products, as diffusers computes them."""
    from diffusers import DDPMScheduler

    return tuple(DDPMScheduler(beta_start=1e-4, beta_end=0.02, beta_schedule="linear").alphas_cumprod.tolist())
