"""Parameterisations of the flow map through backbone outputs (family `parameterisation`)."""

from components.parameterisations import euler, second_order  # noqa: F401
