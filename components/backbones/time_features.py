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


def fold_second_time(linear: nn.Linear, first: int, width: int) -> None:
    """Make `linear`, whose inputs hold the features of s at columns [first, first + width)
    and those of t right after, read t as s: W_s <- W_s + W_t, W_t <- 0. A network whose
    times enter only there then computes at (s, t) what it computed at (s, s): a velocity
    network trained on the diagonal becomes the Euler map X_{s,t}(x) = x + (t - s) b_s(x),
    with the second time's weights zero (the warm start of Decoupled MeanFlow)."""
    s_columns, t_columns = slice(first, first + width), slice(first + width, first + 2 * width)
    with torch.no_grad():
        linear.weight[:, s_columns] += linear.weight[:, t_columns]
        linear.weight[:, t_columns] = 0
