"""Image feature extractors (family `features`) for Fréchet distances."""

from flowmap_components.features import classifier, efficientnet_lite0, inception_v3  # noqa: F401
