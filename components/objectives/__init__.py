"""Training objectives: flow matching and the self-distillation residuals (family `objective`)."""

from components.objectives import esd, flow_matching, lsd, psd, split, weighted_sum  # noqa: F401
