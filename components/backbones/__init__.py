"""Networks (x, s, t) -> (batch, heads, *shape) (family `backbone`)."""

from components.backbones import mlp, unet  # noqa: F401
