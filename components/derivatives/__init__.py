"""How objectives differentiate the student's V_{s,t} in time and along the flow (family `derivative`)."""

from flowmap_components.derivatives import finite_difference, forward_ad, tangent_pass  # noqa: F401
