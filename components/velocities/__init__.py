"""Velocities that close self-distillation targets (family `velocity`)."""

from components.velocities import conditional, model  # noqa: F401
