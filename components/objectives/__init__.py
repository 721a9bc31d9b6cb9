"""Training objectives: flow matching and the self-distillation residuals (family `objective`)."""

from flowmap_components.objectives import (  # noqa: F401
    consistency,
    esd,
    fault,
    flow_matching,
    guided_flow_matching,
    lsd,
    psd,
    scm,
    split,
    weighted_sum,
)
