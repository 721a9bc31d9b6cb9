"""Stop-gradient policies of self-distillation (family `stopgrad`)."""

from flowmap_components.stopgrad import policies  # noqa: F401
