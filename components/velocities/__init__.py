"""Velocities that close self-distillation targets (family `velocity`)."""

from components.velocities import conditional, model, pretrained  # noqa: F401
