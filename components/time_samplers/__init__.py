"""Distributions of the (s, t) pairs of a batch (family `time_sampler`)."""

from flowmap_components.time_samplers import (  # noqa: F401
    beta_gap,
    consistency,
    dyadic,
    full_square,
    logit_normal,
    lognormal_sigma,
    mixture,
    on_grid,
    shift,
    uniform,
)
