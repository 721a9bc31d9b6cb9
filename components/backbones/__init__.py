"""Networks (x, s, t) -> (batch, heads, *shape) (family `backbone`)."""

from flowmap_components.backbones import dit, mlp, unet  # noqa: F401
