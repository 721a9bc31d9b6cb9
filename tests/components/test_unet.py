"""The UNet backbone: shapes, zero start, exact forward-mode derivatives, conditioning, errors."""

import pytest
import torch

from flowmap_components.backbones.unet import UNet
from flowmap_core import registry
from flowmap_core.autodiff import jvp

TINY = {"channels": 8, "channel_multipliers": (1, 2), "blocks": 1, "attention_resolutions": (), "octaves": 3}
WITH_ATTENTION = {**TINY, "attention_resolutions": (4,), "attention_head_channels": 8}


def inputs(shape, batch=3, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *shape), generator=g, dtype=dtype)
    s, t = torch.rand((2, batch), generator=g, dtype=dtype)
    return x, s, t


def off_zero_init(net, std=0.1):
    """Move every parameter off its initial value (the zero-initialised convs included)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=g, dtype=parameter.dtype) * std)
    return net


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8)], ids=["gray", "rgb"])
@pytest.mark.parametrize("heads", [1, 2])
def test_output_shape_and_zero_start(shape, heads):
    """A fresh UNet gives (batch, heads, C, H, W), exactly zero: the initial map is the identity."""
    net = registry.build("backbone", "unet", data_shape=shape, heads=heads, **WITH_ATTENTION)
    out = net(*inputs(shape))
    assert out.shape == (3, heads, *shape)
    assert out.abs().max().item() == 0.0


def test_non_square_images():
    net = off_zero_init(UNet(data_shape=(2, 8, 12), heads=2, **TINY))
    assert net(*inputs((2, 8, 12))).shape == (3, 2, 2, 8, 12)


@pytest.mark.parametrize("config", [TINY, WITH_ATTENTION], ids=["plain", "attention"])
@pytest.mark.parametrize("direction", ["s", "t", "x"])
def test_jvp_matches_finite_differences(config, direction):
    """Forward-mode derivatives (the ones LSD and ESD use) agree with central differences in float64."""
    shape = (2, 8, 8)
    net = off_zero_init(UNet(data_shape=shape, heads=2, **config).double())
    x, s, t = inputs(shape, dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    tangent = {
        "x": (torch.randn(x.shape, generator=g, dtype=x.dtype), torch.zeros_like(s), torch.zeros_like(t)),
        "s": (torch.zeros_like(x), torch.ones_like(s), torch.zeros_like(t)),
        "t": (torch.zeros_like(x), torch.zeros_like(s), torch.ones_like(t)),
    }[direction]
    out, derivative = jvp(net, (x, s, t), tangent)
    torch.testing.assert_close(out, net(x, s, t), rtol=0, atol=1e-12)
    h = 1e-5
    plus = net(*(p + h * d for p, d in zip((x, s, t), tangent, strict=True)))
    minus = net(*(p - h * d for p, d in zip((x, s, t), tangent, strict=True)))
    finite = (plus - minus) / (2 * h)
    error = (derivative - finite).norm() / finite.norm()
    assert finite.norm() > 1e-3, f"output barely depends on {direction}"
    assert error < 1e-6, f"JVP in {direction} off by {error:.2e} (relative)"


def test_channels_last_gives_the_same_values_and_derivatives():
    """`channels_last` changes the memory layout only: value, JVP and gradient as before (float64)."""
    shape = (2, 8, 8)
    nets = [
        off_zero_init(UNet(data_shape=shape, heads=2, channels_last=cl, **WITH_ATTENTION).double()) for cl in (0, 1)
    ]
    assert nets[1].input_conv.weight.is_contiguous(memory_format=torch.channels_last)
    x, s, t = inputs(shape, dtype=torch.float64)
    tangent = (torch.randn_like(x), torch.zeros_like(s), torch.ones_like(t))
    results = []
    for net in nets:
        out, derivative = jvp(net, (x, s, t), tangent)
        derivative.square().mean().backward()
        results.append((out, derivative, net.input_conv.weight.grad))
    for plain, channels_last in zip(*results, strict=True):
        torch.testing.assert_close(channels_last, plain, rtol=1e-12, atol=1e-12)


def test_backward_through_jvp():
    """The LSD pattern: the tangent output is differentiable by backpropagation."""
    shape = (1, 8, 8)
    net = off_zero_init(UNet(data_shape=shape, **WITH_ATTENTION))
    x, s, t = inputs(shape)
    _, derivative = jvp(net, (x, s, t), (torch.zeros_like(x), torch.zeros_like(s), torch.ones_like(t)))
    derivative.square().mean().backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    assert grads.pop("output_conv.bias") is None  # a constant offset has no time derivative
    assert all(g is not None and torch.isfinite(g).all() and g.abs().max() > 0 for g in grads.values())


def test_class_conditional_with_null_label_and_guidance():
    shape = (1, 8, 8)
    net = off_zero_init(UNet(data_shape=shape, num_classes=3, guidance=True, **TINY))
    x, s, t = inputs(shape)
    w = torch.full((3,), 1.5)
    null, real = torch.full((3,), -1), torch.tensor([0, 1, 2])
    assert net.label_embedding.num_embeddings == 4
    out_null = net(x, s, t, label=null, guidance=w)
    out_real = net(x, s, t, label=real, guidance=w)
    assert torch.isfinite(out_null).all()
    assert (out_null - out_real).abs().max() > 1e-3
    assert (net(x, s, t, label=real, guidance=w + 1) - out_real).abs().max() > 1e-3
    with pytest.raises(ValueError, match=r"this UNet is class-conditional: pass label \(-1 for no class\)"):
        net(x, s, t, guidance=w)
    with pytest.raises(ValueError, match="this UNet takes a guidance scale: pass guidance"):
        net(x, s, t, label=real)


def test_sizes_that_do_not_divide_name_the_fix():
    with pytest.raises(ValueError, match=r"must divide by 8; got 28x28: use at most 3 channel_multipliers"):
        UNet(data_shape=(1, 28, 28), channel_multipliers=(1, 2, 2, 2), attention_resolutions=())
    with pytest.raises(ValueError, match=r"attention_resolutions \[16\] are not resolutions .* heights 28, 14, 7"):
        UNet(data_shape=(1, 28, 28), channel_multipliers=(1, 2, 2), attention_resolutions=(16,))
    with pytest.raises(ValueError, match=r"UNet needs data_shape \(channels, height, width\), got \(2,\)"):
        UNet(data_shape=(2,))


def test_bfloat16_autocast_forward_and_jvp():
    """Under bf16 autocast the output and its JVP are finite, and the JVP's backward runs
    (torch's GroupNorm alone would give a float32 tangent to a bfloat16 value there)."""
    shape = (3, 8, 8)
    net = off_zero_init(UNet(data_shape=shape, **WITH_ATTENTION))
    x, s, t = inputs(shape)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, s, t)
        value, derivative = jvp(net, (x, s, t), (torch.zeros_like(x), torch.zeros_like(s), torch.ones_like(t)))
    assert out.shape == (3, 1, *shape) and torch.isfinite(out).all()
    assert derivative.dtype == value.dtype and torch.isfinite(derivative).all()
    derivative.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
