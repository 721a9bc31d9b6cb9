"""Optimisers (family `optimizer`)."""

from components.optimizers import torch_optimizers  # noqa: F401
