"""Networks that supply self-distillation targets (family `teacher`)."""

from components.teachers import ema, online, pretrained  # noqa: F401
