"""Stop-gradient policies of self-distillation (family `stopgrad`)."""

from components.stopgrad import policies  # noqa: F401
