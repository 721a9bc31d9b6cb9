"""Reductions of per-example losses to the minimised scalar (family `weighting`)."""

from flowmap_components.weighting import adaptive, gap_power, learned, off_diagonal, uniform  # noqa: F401
