"""Optimisers (family `optimizer`)."""

from flowmap_components.optimizers import torch_optimizers  # noqa: F401
