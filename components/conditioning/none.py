"""No conditioning: an unconditional model."""

from typing import Any

import attrs
import torch
from torch import Tensor

from flowmap_core.protocols import Batch, Dataset
from flowmap_core.registry import register


@register("conditioning", "none")
@attrs.define(frozen=True, kw_only=True)
class Unconditional:
    """The network sees only (x, s, t)."""

    def __call__(self, batch: Batch, *, generator: torch.Generator, n_diagonal: int | None = None) -> dict[str, Tensor]:
        return {}

    def backbone_options(self, dataset: Dataset) -> dict[str, Any]:
        return {}

    def unconditional(self) -> dict[str, Tensor]:
        return {}

    def given(self, label: int, guidance: float = 1.0) -> dict[str, Tensor]:
        raise ValueError("this run is unconditional (conditioning.none): it takes no class or guidance scale")
