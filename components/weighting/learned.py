"""A learned log-variance weighting w(s, t), as in EDM2 and the official flow-map code."""

import torch
from torch import Tensor, nn

from components.backbones.time_features import FourierTimeFeatures
from flowmap_core.registry import register
from flowmap_core.typing import Scalar, Times, typechecked


@register("weighting", "learned")
class LearnedLogVariance(nn.Module):
    """mean_i exp(-w(s_i, t_i)) l_i + w(s_i, t_i), w linear in Fourier features of (s, t).

    Minimising over w sets exp(w(s, t)) to the expected loss at (s, t), so every pair of
    times contributes on one scale (uncertainty weighting; EDM2, Karras et al. 2024).
    Starts at w = 0, i.e. the uniform mean. Its parameters train with the backbone's.
    """

    def __init__(self, *, octaves: int = 8):
        super().__init__()
        self.features = FourierTimeFeatures(octaves)
        self.linear = nn.Linear(2 * self.features.dim, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def log_variance(self, s: Tensor, t: Tensor) -> Tensor:
        """w(s, t), one value per example."""
        features = torch.cat([self.features(s), self.features(t)], dim=-1)
        return self.linear(features.to(self.linear.weight.dtype)).squeeze(-1).to(s.dtype)

    @typechecked
    def forward(self, per_example: Times, s: Times, t: Times) -> Scalar:
        w = self.log_variance(s, t)
        return (torch.exp(-w) * per_example + w).mean()
