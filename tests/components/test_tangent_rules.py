"""Every tangent rule, and the MLP's and UNet's explicit tangent passes, equal forward-mode AD
(the DiT's: tests/components/test_dit.py).

Each rule's `(y, dy)` is compared with `torch.func.jvp` of the layer in float64 (to 1e-12
relative), for random inputs and tangents; the backbones' `tangent` methods likewise for
each combination of moving inputs (dx, ds, dt), with class labels and guidance scales.
"""

import pytest
import torch
from torch import nn

from flowmap_components.backbones import tangent_rules as rules
from flowmap_components.backbones.dit_blocks import LayerNorm
from flowmap_components.backbones.mlp import MLP
from flowmap_components.backbones.time_features import FourierTimeFeatures
from flowmap_components.backbones.unet import UNet
from flowmap_components.backbones.unet_blocks import group_norm

BOTH_ORDERS = pytest.mark.parametrize(
    "rule", [rules.group_norm_by_group, rules.group_norm_by_channel], ids=["by_group", "by_channel"]
)
"""Both orders of reduction of the GroupNorm rule."""


def _jvp(fn, x, dx):
    return torch.func.jvp(fn, (x,), (dx,))


def _close(actual, expected, what):
    scale = 1 + expected.abs().max().item()
    error = (actual - expected).abs().max().item()
    assert error <= 1e-12 * scale, f"{what}: error {error:.3e} against scale {scale:.3e}"


def _randomised(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return module.double()


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.parametrize(
    "rule, module",
    [
        (rules.silu, None),
        (rules.gelu, None),
        (rules.relu, None),
        (rules.tanh, None),
        (rules.linear, lambda: nn.Linear(6, 5)),
        (rules.conv2d, lambda: nn.Conv2d(6, 4, 3, padding=1)),
        (rules.conv2d, lambda: nn.Conv2d(6, 4, 3, stride=2, padding=1)),
        (rules.group_norm, lambda: group_norm(6)),
        (rules.layer_norm, lambda: LayerNorm(5)),
        (rules.layer_norm, lambda: nn.LayerNorm(5)),
        (rules.layer_norm, lambda: nn.LayerNorm((5, 5), eps=1e-3)),
        (rules.fourier, lambda: FourierTimeFeatures(4)),
    ],
    ids=[
        "silu",
        "gelu",
        "relu",
        "tanh",
        "linear",
        "conv",
        "strided_conv",
        "group_norm",
        "layer_norm",
        "affine_layer_norm",
        "layer_norm_2d",
        "fourier",
    ],
)
def test_rule_equals_forward_ad(rule, module):
    torch.manual_seed(1)
    layer = _randomised(module()) if module else None
    shape = {rules.linear: (3, 6), rules.fourier: (3,)}.get(rule, (3, 6, 5, 5))
    x, dx = torch.randn(shape), torch.randn(shape)
    forward = (lambda h: rule(layer, h, None)[0]) if layer is not None else (lambda h: rule(h, None)[0])
    y, dy = rule(layer, x, dx) if layer is not None else rule(x, dx)
    y_ref, dy_ref = _jvp(forward, x, dx)
    _close(y, y_ref, "value")
    _close(dy, dy_ref, "tangent")
    if layer is not None and rule is not rules.fourier:
        _close(y, layer(x), "value against the layer's forward")
    assert (rule(layer, x, None) if layer is not None else rule(x, None))[1] is None


@BOTH_ORDERS
def test_both_group_norm_orders_equal_forward_ad(rule):
    """`group_norm` runs `group_norm_by_channel` under torch.compile and `group_norm_by_group`
    eager: each equals forward-mode AD in float64."""
    torch.manual_seed(4)
    norm = _randomised(group_norm(12))
    x, dx = torch.randn(3, 12, 5, 5), torch.randn(3, 12, 5, 5)
    y, dy = rule(norm, x, dx)
    y_ref, dy_ref = _jvp(norm, x, dx)
    _close(y, y_ref, "value")
    _close(dy, dy_ref, "tangent")


@BOTH_ORDERS
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "no_spatial"])
def test_group_norm_rule_in_float32_matches_float64(rule, layout):
    """In float32, on activations whose mean is 10x their spread, in any memory layout, both
    orders of reduction stay at float32 accuracy."""
    torch.manual_seed(3)
    norm = _randomised(group_norm(12))
    shape = (4, 12) if layout == "no_spatial" else (4, 12, 6, 6)
    x = 10 + torch.randn(shape) * torch.rand(shape[:2] + (1,) * (len(shape) - 2))
    dx = 3 + torch.randn(shape)
    y_ref, dy_ref = _jvp(norm, x, dx)
    x32, dx32 = x.float(), dx.float()
    if layout == "channels_last":
        x32, dx32 = (v.contiguous(memory_format=torch.channels_last) for v in (x32, dx32))
    y, dy = rule(norm.float(), x32, dx32)
    assert (y.double() - y_ref).abs().max() <= 1e-4 * (1 + y_ref.abs().max())
    assert (dy.double() - dy_ref).abs().max() <= 1e-4 * (1 + dy_ref.abs().max())


def test_attention_rule_equals_forward_ad():
    torch.manual_seed(2)
    q, k, v, dq, dk, dv = torch.randn(6, 2, 3, 7, 4).unbind(0)
    out, d_out = rules.attention(q, k, v, dq, dk, dv)
    ref, d_ref = torch.func.jvp(
        lambda a, b, c: torch.softmax(a @ b.transpose(-1, -2) / 2.0, -1) @ c, (q, k, v), (dq, dk, dv)
    )
    _close(out, ref, "value")
    _close(d_out, d_ref, "tangent")
    _, d_only_v = rules.attention(q, k, v, None, None, dv)
    _, d_ref_v = torch.func.jvp(lambda c: torch.softmax(q @ k.transpose(-1, -2) / 2.0, -1) @ c, (v,), (dv,))
    _close(d_only_v, d_ref_v, "tangent in v alone")


MOVING = [("t",), ("s",), ("x", "s"), ("x", "s", "t")]


def _check_backbone(net, x, s, t, cond):
    torch.manual_seed(3)
    directions = {"x": torch.randn_like(x), "s": torch.randn_like(s), "t": torch.randn_like(t)}
    for moving in MOVING:
        tangents = [directions[name] if name in moving else None for name in ("x", "s", "t")]
        out, d_out = net.tangent(x, s, t, *tangents, **cond)
        point = {"x": x, "s": s, "t": t}

        def forward(*values, moving=moving, point=point):
            return net(**{**point, **dict(zip(moving, values, strict=True))}, **cond)

        ref, d_ref = torch.func.jvp(forward, tuple(point[m] for m in moving), tuple(directions[m] for m in moving))
        _close(out, ref, f"value, moving {moving}")
        _close(d_out, d_ref, f"tangent, moving {moving}")


@pytest.mark.parametrize("activation", ["gelu", "silu", "relu", "tanh"])
def test_mlp_tangent_pass_equals_forward_ad(activation):
    net = _randomised(MLP(data_shape=(3,), heads=2, width=16, depth=2, space_octaves=2, activation=activation))
    x, s, t = torch.randn(5, 3), torch.rand(5), torch.rand(5)
    _check_backbone(net, x, s, t, {})


def test_conditional_mlp_tangent_pass_equals_forward_ad():
    net = _randomised(MLP(data_shape=(2,), width=16, depth=2, num_classes=3, guidance=True))
    x, s, t = torch.randn(4, 2), torch.rand(4), torch.rand(4)
    _check_backbone(net, x, s, t, {"label": torch.tensor([0, 2, -1, 1]), "guidance": torch.rand(4) * 3})


def test_unet_tangent_pass_equals_forward_ad():
    net = _randomised(
        UNet(
            data_shape=(1, 8, 8),
            heads=2,
            channels=8,
            channel_multipliers=(1, 2),
            blocks=1,
            attention_resolutions=(4,),
            attention_head_channels=4,
            num_classes=3,
            guidance=True,
        )
    )
    x, s, t = torch.randn(3, 1, 8, 8), torch.rand(3), torch.rand(3)
    _check_backbone(net, x, s, t, {"label": torch.tensor([0, -1, 2]), "guidance": torch.rand(3)})
