"""Velocities that close self-distillation targets (family `velocity`)."""

from flowmap_components.velocities import conditional, model, pretrained  # noqa: F401
