"""Scaling a backbone's output by a constant, for a warm start whose head means a multiple of the source's."""

import torch
from torch import nn


def scale_affine(layer: nn.Module, factor: float) -> None:
    """Multiply the weight and bias of `layer`, a backbone's last affine layer, by `factor`:
    the backbone then outputs `factor` times what it did (e.g. sCM's F = -(2 / pi) b from a
    flow-matching velocity b, `warm_start.run.output_scale`)."""
    with torch.no_grad():
        layer.weight.mul_(factor)
        if layer.bias is not None:
            layer.bias.mul_(factor)
