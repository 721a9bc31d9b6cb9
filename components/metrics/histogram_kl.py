"""KL divergence between a 2D dataset's exact bin probabilities and a sample histogram."""

import attrs
import torch
from torch import Tensor

from flowmap_core import cards
from flowmap_core.protocols import Dataset, DensityDataset
from flowmap_core.registry import register
from flowmap_core.validators import finite, in_range, positive_integer


@register("metric", "histogram_kl")
@attrs.define(frozen=True, kw_only=True)
class HistogramKL:
    """KL(p || q) = sum_{p > 0} p log(p / max(q, floor)) on a `bins` x `bins` grid of [low, high]^2.

    p is the exact probability of each bin (the dataset integrates its density), q the
    fraction of all samples that fall in the bin (samples outside the grid count in the
    total). The same estimator everywhere: 200 x 200 bins on [-4.5, 4.5]^2, floor 1e-10.
    """

    bins: int = attrs.field(default=200, validator=positive_integer)
    low: float = attrs.field(default=-4.5, validator=finite)
    high: float = attrs.field(default=4.5, validator=finite)
    floor: float = attrs.field(default=1e-10, validator=in_range(0.0, 1.0, low_open=True))
    name: str = attrs.field(default="kl", init=False)

    def card_fields(self, dataset: object) -> dict:
        """What a score's card records of this metric: the histogram and the exact density."""
        return {
            "features": f"{self.bins}x{self.bins} histogram on [{self.low:g}, {self.high:g}]^2",
            "reference": f"the exact density of {cards.describe_dataset(dataset)}",
        }

    def __attrs_post_init__(self) -> None:
        if self.high <= self.low:
            raise ValueError(f"metric.histogram_kl needs high > low; got [{self.low}, {self.high}]")

    def edges(self) -> Tensor:
        return torch.linspace(self.low, self.high, self.bins + 1, dtype=torch.float64)

    def histogram(self, samples: Tensor) -> Tensor:
        """Fraction of `samples` `(n, 2)` in each bin, `(bins, bins)`; non-finite samples fall outside."""
        points = samples.detach().to(device="cpu", dtype=torch.float64)
        index = torch.floor((points - self.low) / (self.high - self.low) * self.bins)
        inside = torch.isfinite(index).all(dim=1) & ((index >= 0) & (index < self.bins)).all(dim=1)
        index = index[inside].to(torch.int64)
        counts = torch.bincount(index[:, 0] * self.bins + index[:, 1], minlength=self.bins * self.bins)
        return counts.reshape(self.bins, self.bins).double() / max(points.shape[0], 1)

    def __call__(self, samples: Tensor, dataset: Dataset) -> float:
        if not isinstance(dataset, DensityDataset):
            raise TypeError(
                f"histogram_kl needs a dataset with exact bin probabilities (bin_probabilities); "
                f"{type(dataset).__name__} has none"
            )
        if samples.dim() != 2 or samples.shape[1] != 2:
            raise ValueError(
                f"histogram_kl scores 2D points shaped (n, 2); got samples of shape {tuple(samples.shape)}"
            )
        edges = self.edges()
        p = dataset.bin_probabilities(edges, edges)
        q = self.histogram(samples)
        mask = p > 0
        return float((p[mask] * torch.log(p[mask] / q[mask].clamp(min=self.floor))).sum())
