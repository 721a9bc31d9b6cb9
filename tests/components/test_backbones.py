"""Every registered backbone: output shape, float64, forward-mode derivatives in both times."""

import pytest
import torch

from flowmap_core import registry
from flowmap_core.autodiff import jvp

FLAT = ([(2,), (3, 4)], {})
"""Data shapes and builder arguments of a backbone that takes any shape."""
CASES = {
    "unet": (
        [(1, 8, 8), (3, 8, 8)],
        {"channels": 8, "channel_multipliers": (1, 2), "blocks": 1, "attention_resolutions": (4,)},
    ),
    "dit": ([(1, 8, 8), (3, 8, 12)], {"patch": 2, "width": 16, "depth": 2, "attention_heads": 2}),
}
"""Backbones that need other shapes (images) or small sizes: (data shapes, builder arguments)."""


def backbones():
    return [
        pytest.param(name, shape, CASES.get(name, FLAT)[1], id=f"{name}-{shape}")
        for name in registry.names("backbone")
        for shape in CASES.get(name, FLAT)[0]
    ]


@pytest.mark.parametrize("name, shape, kwargs", backbones())
@pytest.mark.parametrize("heads", [1, 2])
def test_backbone_contract(name, shape, kwargs, heads):
    net = registry.build("backbone", name, data_shape=shape, heads=heads, **kwargs).double()
    for parameter in net.parameters():  # leave the zero-initialised output layer behind
        torch.nn.init.normal_(parameter, std=0.3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn((5, *shape), generator=g, dtype=torch.float64)
    s, t = torch.rand((2, 5), generator=g, dtype=torch.float64)
    out = net(x, s, t)
    assert out.shape == (5, heads, *shape) and out.dtype == torch.float64
    for argument in ("s", "t"):
        tangents = (torch.zeros_like(x), torch.ones_like(s) * (argument == "s"), torch.ones_like(t) * (argument == "t"))
        _, derivative = jvp(net, (x, s, t), tangents)
        assert derivative.abs().max().item() > 1e-6, f"output does not depend on {argument}"


def test_mlp_starts_at_identity_map():
    """A fresh MLP outputs zero: the initial map is the identity, its velocity zero."""
    net = registry.build("backbone", "mlp", data_shape=(2,))
    x, s, t = torch.randn(4, 2), torch.rand(4), torch.rand(4)
    assert net(x, s, t).abs().max().item() == 0.0


@pytest.mark.parametrize("activation", ["gelu", "silu", "relu", "tanh"])
def test_mlp_activation_by_name(activation):
    net = registry.build("backbone", "mlp", data_shape=(2,), activation=activation)
    assert type(net.hidden[1]).__name__.lower() == activation


def test_mlp_unknown_activation_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown activation 'swish'; known: gelu, silu, relu, tanh"):
        registry.build("backbone", "mlp", data_shape=(2,), activation="swish")
