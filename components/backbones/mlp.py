"""A multilayer perceptron on (x, Fourier(s), Fourier(t)), for 2D and low-dimensional data."""

import math

import torch
from torch import Tensor, nn

from flowmap_components.backbones import tangent_rules as rules
from flowmap_components.backbones.output_scale import scale_affine
from flowmap_components.backbones.time_features import FourierTimeFeatures, fold_second_time
from flowmap_core.config import ConfigError
from flowmap_core.registry import register
from flowmap_core.typing import Data, Heads, Labels, Times, typechecked
from flowmap_core.validators import arguments, non_negative_integer, optional, positive_integer

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "silu": nn.SiLU, "relu": nn.ReLU, "tanh": nn.Tanh}


@register("backbone", "mlp")
@arguments(
    heads=positive_integer,
    width=positive_integer,
    depth=positive_integer,
    octaves=non_negative_integer,
    space_octaves=non_negative_integer,
    num_classes=optional(positive_integer),
    label_features=positive_integer,
)
class MLP(nn.Module):
    """`depth` hidden layers of `width` units on [Fourier(x), Fourier(s), Fourier(t)] -> `heads` outputs.

    The official checkerboard network is 4 hidden layers of 512 with GELU on (s, t, x);
    here each time also gets `octaves` Fourier octaves, and each coordinate of x
    `space_octaves` octaves of base frequency pi / 4 (one period over [-4, 4]; 0: raw x).
    `activation` names the nonlinearity, one of `ACTIVATIONS`.
    With `num_classes`, a learned embedding of the label (-1: no class) joins the input;
    with `guidance`, Fourier features of the guidance scale w. The last layer starts at
    zero, so the initial map is the identity, its velocity zero.
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
        activation: str = "gelu",
        num_classes: int | None = None,
        guidance: bool = False,
        label_features: int = 32,
    ):
        super().__init__()
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise ConfigError(
                f"backbone.mlp.activation: unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}"
            )
        if not isinstance(guidance, bool):
            raise ConfigError(f"backbone.mlp.guidance must be True or False, got {guidance!r}")
        self.data_shape = tuple(data_shape)
        self.heads = heads
        dim = math.prod(self.data_shape)
        self.time_features = FourierTimeFeatures(octaves)
        self.space_features = FourierTimeFeatures(space_octaves, base_frequency=math.pi / 4)
        layers: list[nn.Module] = []
        fan_in = dim * self.space_features.dim + 2 * self.time_features.dim
        self.num_classes = num_classes
        if num_classes is not None:  # one more row: the null label -1, "no class"
            self.label_embedding = nn.Embedding(num_classes + 1, label_features)
            fan_in += label_features
        self.guidance_features = FourierTimeFeatures(4, base_frequency=math.pi / 8) if guidance else None
        if self.guidance_features is not None:
            fan_in += self.guidance_features.dim
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), ACTIVATIONS[activation]()]
            fan_in = width
        self.hidden = nn.Sequential(*layers)
        self.out = nn.Linear(width, heads * dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @typechecked
    def forward(self, x: Data, s: Times, t: Times, label: Labels | None = None, guidance: Times | None = None) -> Heads:
        space = self.space_features(x.flatten(1)).flatten(1)
        features = [space, self.time_features(s), self.time_features(t), *self._conditioning(x, label, guidance)]
        return self.out(self.hidden(torch.cat(features, dim=-1))).view(x.shape[0], self.heads, *self.data_shape)

    def fold_second_time(self) -> None:
        """From now on forward(x, s, t) = the current forward(x, s, s) (`time_features.fold_second_time`)."""
        fold_second_time(self.hidden[0], math.prod(self.data_shape) * self.space_features.dim, self.time_features.dim)

    def scale_output(self, factor: float) -> None:
        """From now on forward = `factor` times the current forward (`output_scale.scale_affine`)."""
        scale_affine(self.out, factor)

    def tangent(
        self,
        x: Tensor,
        s: Tensor,
        t: Tensor,
        dx: Tensor | None,
        ds: Tensor | None,
        dt: Tensor | None,
        label: Tensor | None = None,
        guidance: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """`forward` and its derivative along (dx, ds, dt), layer by layer (`tangent_rules`)."""
        space, d_space = rules.fourier(self.space_features, x.flatten(1), None if dx is None else dx.flatten(1))
        time_s, d_time_s = rules.fourier(self.time_features, s, ds)
        time_t, d_time_t = rules.fourier(self.time_features, t, dt)
        conditioning = self._conditioning(x, label, guidance)
        h, dh = rules.cat(
            [space.flatten(1), time_s, time_t, *conditioning],
            [None if d_space is None else d_space.flatten(1), d_time_s, d_time_t, *[None] * len(conditioning)],
            dim=-1,
        )
        for layer in self.hidden:
            h, dh = rules.linear(layer, h, dh) if isinstance(layer, nn.Linear) else rules.activation(layer, h, dh)
        out, d_out = rules.linear(self.out, h, dh)
        d_out = torch.zeros_like(out) if d_out is None else d_out
        shape = (x.shape[0], self.heads, *self.data_shape)
        return out.view(shape), d_out.view(shape)

    def _conditioning(self, x: Tensor, label: Tensor | None, guidance: Tensor | None) -> list[Tensor]:
        """The label embedding and guidance features that join the input (no tangent: not differentiated)."""
        features = []
        if self.num_classes is not None:
            if label is None:
                raise ValueError("this MLP is class-conditional: pass label (-1 for no class)")
            features.append(self.label_embedding(torch.where(label < 0, self.num_classes, label)).to(x.dtype))
        if self.guidance_features is not None:
            if guidance is None:
                raise ValueError("this MLP takes a guidance scale: pass guidance (1 for plain conditioning)")
            features.append(self.guidance_features(guidance))
        return features
