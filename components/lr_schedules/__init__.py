"""Learning-rate schedules (family `lr_schedule`)."""

from components.lr_schedules import schedules  # noqa: F401
