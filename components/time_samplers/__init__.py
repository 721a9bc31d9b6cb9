"""Distributions of the (s, t) pairs of a batch (family `time_sampler`)."""

from components.time_samplers import beta_gap, full_square, logit_normal, on_grid, uniform  # noqa: F401
