"""Velocities that close self-distillation targets (family `velocity`)."""

from flowmap_components.velocities import conditional, diffusers, model, pretrained  # noqa: F401
