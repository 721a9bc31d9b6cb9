"""How noise and data are paired in a batch (family `coupling`)."""

from flowmap_components.couplings import independent, optimal_transport  # noqa: F401
