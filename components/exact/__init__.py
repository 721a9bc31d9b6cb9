"""Closed-form flows used as ground truth by property tests and users (family `exact`)."""

from flowmap_components.exact import gaussian, gaussian_mixture  # noqa: F401
