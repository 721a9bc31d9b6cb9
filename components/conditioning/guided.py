"""Guided maps: the guidance scale w is an input, drawn per example during training."""

from typing import Any

import attrs
import torch
from torch import Tensor

from components.conditioning.class_label import NULL, dropped_labels, labelled_backbone
from flowmap_core.protocols import Batch, Dataset
from flowmap_core.registry import register
from flowmap_core.validators import unit_interval


def _scale_range(instance: "Guided", attribute: attrs.Attribute, value: tuple[float, float]) -> None:
    if len(value) != 2 or not 0 <= value[0] <= value[1]:
        raise ValueError(f"Guided.scales must be (low, high) with 0 <= low <= high, got {value}")


@register("conditioning", "guided")
@attrs.define(frozen=True, kw_only=True)
class Guided:
    """The network sees the class label (dropped in a share `dropout`) and a guidance scale
    w ~ U(scales) per example: the map of b^w = (1 - w) b(x, null) + w b(x, c) for every w."""

    dropout: float = attrs.field(default=0.1, validator=unit_interval)
    scales: tuple[float, float] = attrs.field(default=(0.0, 3.0), converter=tuple, validator=_scale_range)

    def __call__(self, batch: Batch, *, generator: torch.Generator) -> dict[str, Tensor]:
        label = dropped_labels(batch, self.dropout, generator)
        low, high = self.scales
        w = low + (high - low) * torch.rand(label.shape, generator=generator, device=generator.device)
        return {"label": label, "guidance": w.to(device=label.device, dtype=batch.x1.dtype)}

    def backbone_options(self, dataset: Dataset) -> dict[str, Any]:
        return {**labelled_backbone(dataset), "guidance": True}

    def unconditional(self) -> dict[str, Tensor]:
        return {"label": torch.tensor(NULL), "guidance": torch.tensor(1.0)}

    def given(self, label: int, guidance: float = 1.0) -> dict[str, Tensor]:
        return {"label": torch.tensor(label), "guidance": torch.tensor(float(guidance))}
