"""Reductions of per-example losses to the minimised scalar (family `weighting`)."""

from components.weighting import learned, uniform  # noqa: F401
