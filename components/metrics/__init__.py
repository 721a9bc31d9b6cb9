"""Sample-quality metrics (family `metric`)."""

from components.metrics import frechet, histogram_kl  # noqa: F401
