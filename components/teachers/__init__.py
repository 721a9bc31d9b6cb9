"""Networks that supply self-distillation targets (family `teacher`)."""

from flowmap_components.teachers import diffusers, ema, online, pretrained, weights_file  # noqa: F401
