"""Class-conditional models, with label dropout for classifier-free guidance."""

from typing import Any

import attrs
import torch
from torch import Tensor

from flowmap_core.protocols import Batch, Dataset
from flowmap_core.registry import register
from flowmap_core.validators import unit_interval

NULL = -1
"""The label that means "no class"."""


def dropped_labels(batch: Batch, dropout: float, generator: torch.Generator) -> Tensor:
    """The batch's labels with a share `dropout` replaced by the null label."""
    if batch.label is None:
        raise ValueError("class conditioning needs a labelled dataset; this dataset gives no labels")
    drop = torch.rand(batch.label.shape, generator=generator, device=generator.device) < dropout
    return torch.where(drop.to(batch.label.device, non_blocking=True), torch.full_like(batch.label, NULL), batch.label)


def labelled_backbone(dataset: Dataset) -> dict[str, Any]:
    if not dataset.num_classes:
        raise ValueError(f"class conditioning needs a labelled dataset; {type(dataset).__name__} has no classes")
    return {"num_classes": dataset.num_classes}


DROPOUT_ROWS = ("all", "diagonal")


def _dropout_rows(instance: "ClassLabel", attribute: attrs.Attribute, value: str) -> None:
    if value not in DROPOUT_ROWS:
        raise ValueError(
            f"ClassLabel.dropout_rows must be one of {', '.join(map(repr, DROPOUT_ROWS))} (which rows may lose their "
            f"label), got {value!r}"
        )


@register("conditioning", "class_label")
@attrs.define(frozen=True, kw_only=True)
class ClassLabel:
    """The network sees the class label, replaced by the null label in a share `dropout` of
    the examples, so one network learns b(x, c) and b(x, null) (classifier-free guidance).

    `dropout_rows = 'diagonal'` drops labels on the flow-matching rows only (the first
    `n_diagonal`, s = t) and keeps them on the self-distillation rows, as shortcut models'
    official code does (kvfrans/shortcut-models, targets_shortcut.py: the bootstrap rows
    keep their labels); 'all' drops on every row. The same random numbers are drawn
    either way.
    """

    dropout: float = attrs.field(default=0.1, validator=unit_interval)
    dropout_rows: str = attrs.field(default="all", validator=_dropout_rows)

    def __call__(self, batch: Batch, *, generator: torch.Generator, n_diagonal: int | None = None) -> dict[str, Tensor]:
        label = dropped_labels(batch, self.dropout, generator)
        if self.dropout_rows == "all":
            return {"label": label}
        if n_diagonal is None:
            raise ValueError(
                "conditioning.class_label with dropout_rows = 'diagonal' needs the number of flow-matching rows "
                "(n_diagonal); the caller gave none"
            )
        keep = torch.arange(len(label), device=label.device) >= n_diagonal
        return {"label": torch.where(keep, batch.label, label)}

    def backbone_options(self, dataset: Dataset) -> dict[str, Any]:
        return labelled_backbone(dataset)

    def unconditional(self) -> dict[str, Tensor]:
        return {"label": torch.tensor(NULL)}

    def given(self, label: int, guidance: float = 1.0) -> dict[str, Tensor]:
        if guidance != 1.0:
            raise ValueError("this run has no guidance input (conditioning.class_label); use conditioning.guided")
        return {"label": torch.tensor(label)}
