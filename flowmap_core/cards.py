"""Evaluation cards: what a score was measured with, so only comparable scores are compared.

A score of a generative model means something only beside how it was measured: the metric,
the feature network and its weights, the reference set and its statistics, the number of
samples, the evaluation seed, whether images were quantised to 8 bits and resized. Every
table in scores.json carries a `Card`; `flowmap report` refuses to compare cells whose cards
differ and names what differs.
"""

import hashlib
from typing import Any

import attrs
import torch
from torch import nn


@attrs.frozen(kw_only=True)
class Card:
    """How one table's scores were measured (the rows name the weights, the columns the NFE).

    `features` is the feature space (a network's name, or the histogram of a 2D metric) and
    `features_sha256` a hash of the network's weights; `reference` names the reference set,
    `reference_count` its size and `reference_sha256` a hash of its statistics (None where
    the reference is a closed-form density); `resized` the size images were resized to for
    the features (None: not resized)."""

    metric: str
    features: str | None = None
    features_sha256: str | None = None
    reference: str = ""
    reference_count: int | None = None
    reference_sha256: str | None = None
    num_samples: int
    seed: int
    quantised: bool = False
    resized: int | None = None

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Card":
        names = {field.name for field in attrs.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def differences(self, other: "Card") -> list[str]:
        """'field: this vs other' for every field in which the cards differ."""
        mine, theirs = self.to_json(), other.to_json()
        return [f"{name}: {mine[name]!r} vs {theirs[name]!r}" for name in mine if mine[name] != theirs[name]]

    def line(self) -> str:
        """The card in one line of a report."""
        parts = [f"metric {self.metric}"]
        if self.features is not None:
            digest = f" (weights sha256 {self.features_sha256[:12]})" if self.features_sha256 else ""
            parts.append(f"features {self.features}{digest}")
        reference = f"reference {self.reference}"
        if self.reference_count is not None:
            reference += f", {self.reference_count:,} examples"
        if self.reference_sha256 is not None:
            reference += f" (statistics sha256 {self.reference_sha256[:12]})"
        parts += [reference, f"{self.num_samples:,} samples", f"seed {self.seed}"]
        parts.append("quantised to 8 bits" if self.quantised else "not quantised")
        if self.resized is not None:
            parts.append(f"resized to {self.resized}x{self.resized}")
        return "; ".join(parts)


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over named tensors (names, shapes, dtypes and bytes, in name order)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}{tuple(value.shape)}{value.dtype}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def module_sha256(module: nn.Module) -> str:
    """SHA-256 of a network's weights and buffers."""
    return tensors_sha256(dict(module.state_dict()))


def network_of(component: object) -> nn.Module | None:
    """The network a feature extractor wraps: itself, or its first attribute that is one."""
    if isinstance(component, nn.Module):
        return component
    for field in attrs.fields(type(component)) if attrs.has(type(component)) else ():
        value = getattr(component, field.name, None)
        if isinstance(value, nn.Module):
            return value
    return None


def describe_dataset(dataset: object) -> str:
    """A dataset's name for a card: its own description, its shard URL, or its registered name."""
    description = getattr(dataset, "description", None)
    if isinstance(description, str):
        return description
    url = getattr(dataset, "url", None)
    if isinstance(url, str):
        return url
    name = getattr(type(dataset), "registry_name", type(dataset).__name__)
    family = getattr(type(dataset), "registry_family", "dataset")
    return f"{family}.{name}"
