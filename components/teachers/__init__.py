"""Networks that supply self-distillation targets (family `teacher`)."""

from flowmap_components.teachers import diffusers, ema, online, pretrained  # noqa: F401
