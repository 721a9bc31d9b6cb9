"""A dataset times a constant, scored in its own units: data of the spread a method assumes.

TrigFlow (Lu & Song 2024, Sec. 2, the sCM interpolant) takes data of standard deviation sigma_d
and noise N(0, sigma_d^2): in our units (unit noise) data of unit standard deviation. A dataset
of another spread (the checkerboard's is 4 / sqrt(3)) is brought there by `scale = 1 / std`,
as sCM and EDM normalise image data before training.
"""

from typing import Any

import attrs
import torch
from torch import Tensor

from flowmap_core import cards, data
from flowmap_core.protocols import Batch, Dataset
from flowmap_core.registry import register
from flowmap_core.validators import component, positive_finite


def _drawn_from_memory(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """A dataset with `sample` (not a stream of shards, whose examples are read, not drawn)."""
    if not data.drawn_from_memory(value):
        raise TypeError(
            f"dataset.scaled.dataset must be a dataset drawn from memory (one with sample()), "
            f"got {type(value).__name__}: streamed shards cannot be scaled here"
        )


@register("dataset", "scaled")
@attrs.define(frozen=True, kw_only=True)
class Scaled:
    """x1 = scale * (a sample of `dataset`), labels unchanged.

    The model trains and samples in the scaled units; evaluation scores, plots and compares
    samples in the dataset's own units: `images()` is the dataset as it was, whose `decode`
    divides samples by `scale` (the route `EvalSpec.images` takes for latents too), so a metric,
    its noise floor and its card are those of the unscaled dataset.
    """

    dataset: Dataset = attrs.field(validator=[component, _drawn_from_memory])
    scale: float = attrs.field(validator=positive_finite)

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.dataset.data_shape)

    @property
    def num_classes(self) -> int | None:
        return self.dataset.num_classes

    def sample(self, n: int, *, generator: torch.Generator, device: torch.device, dtype: torch.dtype) -> Batch:
        batch = self.dataset.sample(n, generator=generator, device=device, dtype=dtype)
        return attrs.evolve(batch, x1=batch.x1 * self.scale)

    def images(self) -> "Unscaled":
        """The dataset in its own units, with `decode` from the scaled units."""
        return Unscaled(scaled=self)


@attrs.define(frozen=True)
class Unscaled:
    """The wrapped dataset as it is (every attribute is its), plus `decode` = divide by the scale."""

    scaled: Scaled

    @property
    def description(self) -> str:
        """The wrapped dataset's name on an evaluation card: the scores are in its units."""
        return cards.describe_dataset(self.scaled.dataset)

    def decode(self, x: Tensor) -> Tensor:
        """Samples `x` of the scaled data in the dataset's own units."""
        return x / self.scaled.scale

    def __getattr__(self, name: str) -> Any:
        if name == "scaled":
            raise AttributeError(name)
        return getattr(self.scaled.dataset, name)
