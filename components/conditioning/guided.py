"""Guided maps: the guidance scale w is an input, drawn per example during training."""

from typing import Any

import attrs
import torch
from torch import Tensor

from flowmap_components.conditioning.class_label import NULL, dropped_labels, labelled_backbone
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
    w ~ U(scales) per example: the map of b^w = (1 - w) b(x, null) + w b(x, c) for every w.

    `edge_fraction` draws that share of the examples at w = 0, with the label of another
    example of the batch (a random permutation). At w = 0 the guided velocity is
    b(x, null) for every class, and its flow visits every class's paths; with labels tied
    to their data, the map at (c, w) is trained only on class c's paths, and at w = 0 it
    stays wrong off them (docs/methods.md, "The guided flow map"). Needs `scales[0] == 0`.
    `objective.guided_flow_matching` trains the null class's flow matching on rows at
    w = 0, so a label away from its data never reaches the conditional velocity.
    """

    dropout: float = attrs.field(default=0.1, validator=unit_interval)
    scales: tuple[float, float] = attrs.field(default=(0.0, 3.0), converter=tuple, validator=_scale_range)
    edge_fraction: float = attrs.field(default=0.0, validator=unit_interval)

    def __attrs_post_init__(self) -> None:
        if self.edge_fraction > 0 and self.scales[0] != 0:
            raise ValueError(f"Guided.edge_fraction draws w = 0, outside scales = {self.scales}; start them at 0")

    def __call__(self, batch: Batch, *, generator: torch.Generator, n_diagonal: int | None = None) -> dict[str, Tensor]:
        label = dropped_labels(batch, self.dropout, generator)
        low, high = self.scales
        w = low + (high - low) * torch.rand(label.shape, generator=generator, device=generator.device)
        if self.edge_fraction > 0:
            at_edge = torch.rand(label.shape, generator=generator, device=generator.device) < self.edge_fraction
            w = torch.where(at_edge, torch.zeros_like(w), w)
            other = torch.randperm(len(label), generator=generator, device=generator.device)
            at_edge, other = at_edge.to(label.device), other.to(label.device)
            label = torch.where(at_edge, batch.label[other], label)
        return {"label": label, "guidance": w.to(device=label.device, dtype=batch.x1.dtype)}

    def backbone_options(self, dataset: Dataset) -> dict[str, Any]:
        return {**labelled_backbone(dataset), "guidance": True}

    def unconditional(self) -> dict[str, Tensor]:
        return {"label": torch.tensor(NULL), "guidance": torch.tensor(1.0)}

    def given(self, label: int, guidance: float = 1.0) -> dict[str, Tensor]:
        return {"label": torch.tensor(label), "guidance": torch.tensor(float(guidance))}
