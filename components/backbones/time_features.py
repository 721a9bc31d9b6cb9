"""Fourier features of times in [0, 1], shared by backbones and learned weightings."""

import math

import torch
from torch import Tensor, nn


class FourierTimeFeatures(nn.Module):
    """t -> [t, sin(pi 2^k t), cos(pi 2^k t) for k < n]: `1 + 2 n` features per time.

    Frequencies are fixed (octaves), so the features are deterministic and identical
    on every process; the lowest octave spans [0, 1] once.
    """

    def __init__(self, octaves: int = 8):
        super().__init__()
        if octaves < 0:
            raise ValueError(f"octaves must be >= 0, got {octaves}")
        self.register_buffer("frequencies", math.pi * 2.0 ** torch.arange(octaves, dtype=torch.float32))
        self.dim = 1 + 2 * octaves

    def forward(self, t: Tensor) -> Tensor:
        angles = t.unsqueeze(-1) * self.frequencies.to(t.dtype)
        return torch.cat([t.unsqueeze(-1), torch.sin(angles), torch.cos(angles)], dim=-1)
