"""Samplers: from noise to data with a trained map (family `sampler`)."""

from flowmap_components.samplers import consistency, flow_map, ode  # noqa: F401
