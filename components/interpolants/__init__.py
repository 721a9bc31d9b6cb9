"""Interpolants `x_t = alpha(t) x0 + beta(t) x1` (family `interpolant`)."""

from flowmap_components.interpolants import general, linear, trigonometric  # noqa: F401
