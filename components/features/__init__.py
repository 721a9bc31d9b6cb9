"""Image feature extractors (family `features`) for Fréchet distances."""

from components.features import efficientnet_lite0  # noqa: F401
