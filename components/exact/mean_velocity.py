"""The mean velocity of an exact flow, read from its map and its velocity."""

import torch
from torch import Tensor

from flowmap_core.flow_map import expand_time
from flowmap_core.protocols import ExactFlow


def from_flow_map(flow: ExactFlow, x: Tensor, s: Tensor, t: Tensor) -> Tensor:
    """v_{s,t}(x) = (X*_{s,t}(x) - x) / (t - s) off the diagonal and b_s(x) on it, the
    convention X_{s,t}(x) = x + (t - s) v_{s,t}(x) (DESIGN.md) solved for v."""
    gap = expand_time(t - s, x)
    on_diagonal = gap == 0
    safe_gap = torch.where(on_diagonal, torch.ones_like(gap), gap)
    off = (flow.flow_map(x, s, t) - x) / safe_gap
    return torch.where(on_diagonal, flow.velocity(x, s), off)
