"""Fourier features of times in [0, 1], shared by backbones and learned weightings."""

import math

import torch
from torch import Tensor, nn


class FourierTimeFeatures(nn.Module):
    """t -> [t, sin(w 2^k t), cos(w 2^k t) for k < n]: `1 + 2 n` features per input value.

    Frequencies are fixed octaves of `base_frequency` (default pi: the lowest octave
    spans [0, 1] once), so the features are deterministic and identical on every process.
    Applies elementwise: an input `(..., )` gives `(..., 1 + 2 n)`.
    """

    def __init__(self, octaves: int = 8, base_frequency: float = math.pi):
        super().__init__()
        if octaves < 0:
            raise ValueError(f"octaves must be >= 0, got {octaves}")
        self.register_buffer("frequencies", base_frequency * 2.0 ** torch.arange(octaves, dtype=torch.float32))
        self.dim = 1 + 2 * octaves

    def forward(self, t: Tensor) -> Tensor:
        angles = t.unsqueeze(-1) * self.frequencies.to(t.dtype)
        return torch.cat([t.unsqueeze(-1), torch.sin(angles), torch.cos(angles)], dim=-1)
