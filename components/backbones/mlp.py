"""A multilayer perceptron on (x, Fourier(s), Fourier(t)), for 2D and low-dimensional data."""

import math

import torch
from torch import nn

from components.backbones.time_features import FourierTimeFeatures
from flowmap_core.registry import register
from flowmap_core.typing import Data, Heads, Times, typechecked


@register("backbone", "mlp")
class MLP(nn.Module):
    """`depth` hidden layers of `width` units on [Fourier(x), Fourier(s), Fourier(t)] -> `heads` outputs.

    The official checkerboard network is 4 hidden layers of 512 with GELU on (s, t, x);
    here each time also gets `octaves` Fourier octaves, and each coordinate of x
    `space_octaves` octaves of base frequency pi / 4 (one period over [-4, 4]; 0: raw x).
    The last layer starts at zero, so the initial map is the identity, its velocity zero.
    """

    def __init__(
        self,
        *,
        data_shape: tuple[int, ...],
        heads: int = 1,
        width: int = 512,
        depth: int = 4,
        octaves: int = 8,
        space_octaves: int = 0,
        activation: type[nn.Module] = nn.GELU,
    ):
        super().__init__()
        if depth < 1 or width < 1 or heads < 1:
            raise ValueError(f"MLP needs depth, width and heads >= 1; got depth={depth}, width={width}, heads={heads}")
        self.data_shape = tuple(data_shape)
        self.heads = heads
        dim = math.prod(self.data_shape)
        self.time_features = FourierTimeFeatures(octaves)
        self.space_features = FourierTimeFeatures(space_octaves, base_frequency=math.pi / 4)
        layers: list[nn.Module] = []
        fan_in = dim * self.space_features.dim + 2 * self.time_features.dim
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), activation()]
            fan_in = width
        self.hidden = nn.Sequential(*layers)
        self.out = nn.Linear(width, heads * dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @typechecked
    def forward(self, x: Data, s: Times, t: Times) -> Heads:
        space = self.space_features(x.flatten(1)).flatten(1)
        features = torch.cat([space, self.time_features(s), self.time_features(t)], dim=-1)
        return self.out(self.hidden(features)).view(x.shape[0], self.heads, *self.data_shape)
