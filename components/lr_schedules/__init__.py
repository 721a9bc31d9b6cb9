"""Learning-rate schedules (family `lr_schedule`)."""

from flowmap_components.lr_schedules import schedules  # noqa: F401
