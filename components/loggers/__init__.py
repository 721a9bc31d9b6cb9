"""Experiment trackers a run logs to besides metrics.jsonl (family `logger`)."""

from flowmap_components.loggers import tensorboard, weights_and_biases  # noqa: F401
