"""Gaussian data N(mean, diag(std^2)): the data side of the closed-form case."""

import attrs
import torch

from flowmap_components.exact.gaussian import GaussianFlow
from flowmap_core.protocols import Batch
from flowmap_core.registry import register


@register("dataset", "gaussian")
@attrs.define(frozen=True, kw_only=True)
class Gaussian:
    """N(mean, diag(std^2)); its exact flow map is `exact.gaussian` with the same moments."""

    mean: tuple[float, ...] = attrs.field(default=(1.0, -0.5), converter=tuple)
    std: tuple[float, ...] = attrs.field(default=(0.5, 1.5), converter=tuple)
    num_classes: int | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        GaussianFlow(mean=self.mean, std=self.std)

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (len(self.mean),)

    def sample(self, n: int, *, generator: torch.Generator, device: torch.device, dtype: torch.dtype) -> Batch:
        points = GaussianFlow(mean=self.mean, std=self.std).sample_data(n, generator=generator, dtype=torch.float64)
        return Batch(x1=points.to(device=device, dtype=dtype))
