"""What the network is conditioned on besides (x, s, t) (family `conditioning`)."""

from components.conditioning import class_label, guided, none  # noqa: F401
