"""Sample-quality metrics (family `metric`)."""

from components.metrics import histogram_kl  # noqa: F401
