"""What the network is conditioned on besides (x, s, t) (family `conditioning`)."""

from flowmap_components.conditioning import class_label, guided, none  # noqa: F401
