"""Parameterisations of the flow map through backbone outputs (family `parameterisation`)."""

from flowmap_components.parameterisations import euler, second_order, single_time, trigflow  # noqa: F401
