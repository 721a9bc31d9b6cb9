"""A 2D mixture of axis-aligned Gaussians, with exact bin probabilities."""

import math

import attrs
import torch
from torch import Tensor

from flowmap_components.exact.gaussian_mixture import GaussianMixtureFlow
from flowmap_core.protocols import Batch
from flowmap_core.registry import register


def _ring(k: int = 8, radius: float = 3.0) -> tuple[tuple[float, float], ...]:
    return tuple((radius * math.cos(2 * math.pi * i / k), radius * math.sin(2 * math.pi * i / k)) for i in range(k))


def _check(instance: "GaussianMixture", attribute: attrs.Attribute, value: tuple) -> None:
    k = len(instance.means)
    if k == 0 or any(len(m) != 2 for m in instance.means):
        raise ValueError(f"GaussianMixture.means must be a non-empty list of 2D points, got {instance.means}")
    if len(value) != k:
        raise ValueError(f"GaussianMixture.{attribute.name} has {len(value)} entries for {k} components")
    if attribute.name == "stds" and min(value) <= 0:
        raise ValueError(f"GaussianMixture.stds must be positive, got {value}")
    if attribute.name == "weights" and (min(value) < 0 or sum(value) <= 0):
        raise ValueError(f"GaussianMixture.weights must be non-negative with a positive sum, got {value}")


@register("dataset", "gaussian_mixture")
@attrs.define(frozen=True, kw_only=True)
class GaussianMixture:
    """sum_k w_k N(mean_k, std_k^2 I) in 2D; labels are the component index.

    Default: 8 equal modes on a ring of radius 3, std 0.3.
    """

    means: tuple[tuple[float, float], ...] = attrs.field(factory=_ring, converter=lambda v: tuple(map(tuple, v)))
    stds: tuple[float, ...] = attrs.field(default=(0.3,) * 8, converter=tuple, validator=_check)
    weights: tuple[float, ...] = attrs.field(default=(1.0,) * 8, converter=tuple, validator=_check)
    data_shape: tuple[int, ...] = attrs.field(default=(2,), init=False)

    @property
    def num_classes(self) -> int:
        return len(self.means)

    def _params(self) -> tuple[Tensor, Tensor, Tensor]:
        w = torch.tensor(self.weights, dtype=torch.float64)
        return torch.tensor(self.means, dtype=torch.float64), torch.tensor(self.stds, dtype=torch.float64), w / w.sum()

    def sample(self, n: int, *, generator: torch.Generator, device: torch.device, dtype: torch.dtype) -> Batch:
        means, stds, weights = (p.to(generator.device) for p in self._params())
        label = torch.multinomial(weights, n, replacement=True, generator=generator)
        z = torch.randn((n, 2), generator=generator, device=generator.device, dtype=torch.float64)
        points = means[label] + stds[label, None] * z
        return Batch(x1=points.to(device=device, dtype=dtype), label=label.to(device))

    def _masses(self, edges_x: Tensor, edges_y: Tensor) -> tuple[Tensor, Tensor]:
        """Mass of each component in each column and row of bins: `(bins, k)` each."""
        means, stds, _ = self._params()

        def mass(edges: Tensor, centre: Tensor) -> Tensor:
            cdf = torch.special.ndtr((edges.double()[:, None] - centre[None, :]) / stds[None, :])
            return cdf[1:] - cdf[:-1]

        return mass(edges_x, means[:, 0]), mass(edges_y, means[:, 1])

    def bin_probabilities(self, edges_x: Tensor, edges_y: Tensor) -> Tensor:
        mass_x, mass_y = self._masses(edges_x, edges_y)
        return torch.einsum("ik,jk,k->ij", mass_x, mass_y, self._params()[2])

    def class_bin_probabilities(self, label: int, edges_x: Tensor, edges_y: Tensor) -> Tensor:
        """Exact bin probabilities of component `label` alone."""
        mass_x, mass_y = self._masses(edges_x, edges_y)
        return torch.outer(mass_x[:, label], mass_y[:, label])

    def class_sample(
        self, label: int, n: int, *, generator: torch.Generator, device: torch.device, dtype: torch.dtype
    ) -> Batch:
        """`n` points of component `label`."""
        means, stds, _ = self._params()
        z = torch.randn((n, 2), generator=generator, device=generator.device, dtype=torch.float64)
        points = means[label].to(z.device) + stds[label] * z
        return Batch(x1=points.to(device=device, dtype=dtype), label=torch.full((n,), label, device=device))


@register("dataset", "gaussian_mixture_nd")
@attrs.define(frozen=True, kw_only=True)
class GaussianMixtureND:
    """The d-dimensional mixture sum_k w_k N(m_k, diag(sigma_k^2)) of `exact.gaussian_mixture`,
    drawn through it, so a run trains on the very distribution whose flow map it is scored
    against; labels are the component index.

    In gin, bind the mixture once and let both sides build it::

        train.dataset = @dataset.gaussian_mixture_nd()
        dataset.gaussian_mixture_nd.mixture = @exact.gaussian_mixture()
        exact.gaussian_mixture.means = @exact.mixture_means()
        exact.mixture_means.dimension = 8
    """

    mixture: GaussianMixtureFlow = attrs.field(factory=GaussianMixtureFlow)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.mixture, GaussianMixtureFlow):
            name = type(self.mixture).__name__
            raise TypeError(f"dataset.gaussian_mixture_nd.mixture must be @exact.gaussian_mixture(), got {name}")

    @property
    def data_shape(self) -> tuple[int, ...]:
        return self.mixture.data_shape

    @property
    def num_classes(self) -> int:
        return self.mixture.num_components

    def sample(self, n: int, *, generator: torch.Generator, device: torch.device, dtype: torch.dtype) -> Batch:
        points, label = self.mixture.sample(n, generator=generator)
        return Batch(x1=points.to(device=device, dtype=dtype), label=label.to(device))
