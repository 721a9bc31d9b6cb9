"""Networks that supply self-distillation targets (family `teacher`)."""

from components.teachers import ema, online  # noqa: F401
