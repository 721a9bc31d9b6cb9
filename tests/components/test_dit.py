"""The DiT backbone: shapes, zero start, the explicit tangent pass and forward-mode derivatives
against each other and against finite differences (float64), conditioning, errors, bfloat16,
and training in the trainer."""

import itertools

import attrs
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from flowmap_components.backbones.dit import DiT
from flowmap_components.backbones.dit_blocks import sincos_2d
from flowmap_core import config, registry, runs
from flowmap_core.autodiff import jvp
from flowmap_core.protocols import Batch, HasTangentPass
from flowmap_core.trainer import Trainer

TINY = {"patch": 2, "width": 16, "depth": 2, "attention_heads": 2, "octaves": 3}
MOVING = [combo for n in (1, 2, 3) for combo in itertools.combinations("xst", n)]
"""Every non-empty set of moving inputs."""


def inputs(shape, batch=3, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *shape), generator=g, dtype=dtype)
    s, t = torch.rand((2, batch), generator=g, dtype=dtype)
    return x, s, t


def off_zero_init(net, std=0.2):
    """Move every parameter off its initial value (the zero-initialised modulations and output
    included), in float64."""
    g = torch.Generator().manual_seed(1)
    net = net.double()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=g, dtype=parameter.dtype) * std)
    return net


def _close(actual, expected, what):
    scale = 1 + expected.abs().max().item()
    error = (actual - expected).abs().max().item()
    assert error <= 1e-12 * scale, f"{what}: error {error:.3e} against scale {scale:.3e}"


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8)], ids=["gray", "rgb"])
@pytest.mark.parametrize("heads", [1, 2])
def test_output_shape_and_zero_start(shape, heads):
    """A fresh DiT gives (batch, heads, C, H, W), exactly zero: the initial map is the identity."""
    net = registry.build("backbone", "dit", data_shape=shape, heads=heads, **TINY)
    assert isinstance(net, HasTangentPass)
    out = net(*inputs(shape))
    assert out.shape == (3, heads, *shape)
    assert out.abs().max().item() == 0.0
    x, s, t = inputs(shape)
    value, derivative = net.tangent(x, s, t, torch.randn_like(x), None, torch.ones_like(t))
    assert value.abs().max().item() == 0.0 and derivative.abs().max().item() == 0.0


def test_non_square_images_and_unpatchify_inverts_the_patch_layout():
    """A patch embedding that copies each patch's pixels into its token, un-patchified, gives
    the image back (on a non-square image, every pixel distinct)."""
    shape = (2, 4, 6)
    net = DiT(data_shape=shape, heads=1, patch=2, width=8, depth=1, attention_heads=1, octaves=0).double()
    with torch.no_grad():
        net.patch_embedding.bias.zero_()
        # token channel (p * 2 + q) * 2 + c := pixel (p, q) of channel c: the final Linear's layout
        net.patch_embedding.weight.copy_(torch.eye(8, dtype=torch.float64).reshape(8, 2, 2, 2).permute(0, 3, 1, 2))
    x = torch.arange(48, dtype=torch.float64).reshape(1, *shape)
    tokens = net.patch_embedding(x).flatten(2).transpose(1, 2)
    assert tokens.shape == (1, 6, 8)
    assert torch.equal(net._image(tokens), x.unsqueeze(1))
    out = off_zero_init(DiT(data_shape=shape, heads=2, **TINY))(*inputs(shape, dtype=torch.float64))
    assert out.shape == (3, 2, *shape) and torch.isfinite(out).all()


def test_fixed_positional_embedding_is_the_sincos_table():
    net = DiT(data_shape=(1, 8, 8), **TINY)
    table = sincos_2d(16, 4, 4)
    assert "positional" not in net.state_dict() and not any(p is net.positional for p in net.parameters())
    torch.testing.assert_close(net.positional, table.float())
    assert table.abs().max() <= 1.0 and torch.equal(
        table[0], torch.tensor([0.0, 1.0], dtype=torch.float64).repeat_interleave(4).repeat(2)
    )
    assert len({tuple(row.tolist()) for row in table}) == 16  # every position distinct
    learned = DiT(data_shape=(1, 8, 8), positional="learned", **TINY)
    assert isinstance(learned.positional, torch.nn.Parameter)
    torch.testing.assert_close(learned.positional.detach(), table.float())


@pytest.mark.parametrize(
    "options, cond",
    [
        ({}, {}),
        ({"positional": "learned"}, {}),
        ({"num_classes": 3, "guidance": True}, {"label": torch.tensor([0, -1, 2]), "guidance": torch.rand(3) * 3}),
    ],
    ids=["plain", "learned_positions", "label_and_guidance"],
)
def test_tangent_pass_equals_forward_ad(options, cond):
    """`tangent` equals `torch.func.jvp` of `forward` (float64, 1e-12) for every set of moving inputs."""
    shape = (2, 8, 8)
    net = off_zero_init(DiT(data_shape=shape, heads=2, **TINY, **options))
    x, s, t = inputs(shape, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    point = {"x": x, "s": s, "t": t}
    directions = {name: torch.randn(v.shape, generator=g, dtype=v.dtype) for name, v in point.items()}
    for moving in MOVING:
        tangents = [directions[name] if name in moving else None for name in "xst"]
        out, d_out = net.tangent(x, s, t, *tangents, **cond)

        def forward(*values, moving=moving):
            return net(**{**point, **dict(zip(moving, values, strict=True))}, **cond)

        with sdpa_kernel(SDPBackend.MATH):
            ref, d_ref = torch.func.jvp(forward, tuple(point[m] for m in moving), tuple(directions[m] for m in moving))
        _close(out, ref, f"value, moving {moving}")
        _close(d_out, d_ref, f"tangent, moving {moving}")
        assert d_ref.abs().max() > 1e-3, f"output barely moves with {moving}"


@pytest.mark.parametrize("direction", ["s", "t", "x"])
def test_jvp_matches_finite_differences(direction):
    """Forward-mode derivatives (the ones LSD and ESD use) agree with central differences in float64."""
    shape = (2, 8, 8)
    net = off_zero_init(DiT(data_shape=shape, heads=2, num_classes=3, **TINY))
    x, s, t = inputs(shape, dtype=torch.float64)
    label = torch.tensor([1, -1, 0])
    g = torch.Generator().manual_seed(2)
    tangent = {
        "x": (torch.randn(x.shape, generator=g, dtype=x.dtype), torch.zeros_like(s), torch.zeros_like(t)),
        "s": (torch.zeros_like(x), torch.ones_like(s), torch.zeros_like(t)),
        "t": (torch.zeros_like(x), torch.zeros_like(s), torch.ones_like(t)),
    }[direction]

    def fn(*args):
        return net(*args, label=label)

    out, derivative = jvp(fn, (x, s, t), tangent)
    torch.testing.assert_close(out, fn(x, s, t), rtol=0, atol=1e-12)
    h = 1e-5
    plus = fn(*(p + h * d for p, d in zip((x, s, t), tangent, strict=True)))
    minus = fn(*(p - h * d for p, d in zip((x, s, t), tangent, strict=True)))
    finite = (plus - minus) / (2 * h)
    error = (derivative - finite).norm() / finite.norm()
    assert finite.norm() > 1e-3, f"output barely depends on {direction}"
    assert error < 1e-6, f"JVP in {direction} off by {error:.2e} (relative)"


def test_backward_through_the_tangent_pass():
    """The LSD pattern: the tangent output is differentiable by backpropagation, and reaches
    every parameter a time derivative depends on."""
    shape = (1, 8, 8)
    net = off_zero_init(DiT(data_shape=shape, **TINY)).float()
    x, s, t = inputs(shape)
    _, derivative = net.tangent(x, s, t, None, None, torch.ones_like(t))
    derivative.square().mean().backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    # the final Linear's bias is a constant offset: it has no time derivative
    assert grads.pop("final.linear.bias") is None
    assert all(g is not None and torch.isfinite(g).all() and g.abs().max() > 0 for g in grads.values()), [
        name for name, g in grads.items() if g is None or g.abs().max() == 0
    ]


def test_class_conditional_with_null_label_and_guidance():
    shape = (1, 8, 8)
    net = off_zero_init(DiT(data_shape=shape, num_classes=3, guidance=True, **TINY))
    x, s, t = inputs(shape, dtype=torch.float64)
    w = torch.full((3,), 1.5, dtype=torch.float64)
    null, real = torch.full((3,), -1), torch.tensor([0, 1, 2])
    assert net.label_embedding.num_embeddings == 4
    out_null = net(x, s, t, label=null, guidance=w)
    out_real = net(x, s, t, label=real, guidance=w)
    assert torch.isfinite(out_null).all()
    assert (out_null - out_real).abs().max() > 1e-3
    assert (net(x, s, t, label=real, guidance=w + 1) - out_real).abs().max() > 1e-3
    with pytest.raises(ValueError, match=r"this DiT is class-conditional: pass label \(-1 for no class\)"):
        net(x, s, t, guidance=w)
    with pytest.raises(ValueError, match="this DiT takes a guidance scale: pass guidance"):
        net(x, s, t, label=real)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"data_shape": (2,)}, r"needs data_shape \(channels, height, width\), got \(2,\)"),
        ({"patch": 3}, r"patch = 3 must divide the image's height and width, got 8x8; patches that fit: 1, 2, 4, 8"),
        ({"width": 18}, r"width = 18 must divide by 4 .* and by attention_heads = 2"),
        ({"attention_heads": 3}, r"width = 16 must divide by 4 .* and by attention_heads = 3"),
        ({"depth": 0}, r"backbone.dit.depth must be a positive integer, in \[1, inf\), got 0"),
        ({"positional": "rope"}, r"unknown positional embedding 'rope'; known: fixed, learned"),
        ({"mlp_ratio": 0}, r"backbone.dit.mlp_ratio must be positive"),
        ({"mlp_ratio": 0.01}, r"backbone.dit.mlp_ratio must leave width \* mlp_ratio >= 1 unit"),
    ],
)
def test_bad_settings_name_the_fix(options, message):
    with pytest.raises(ValueError, match=message):
        DiT(**{"data_shape": (1, 8, 8), **TINY, **options})


def test_bfloat16_autocast_forward_jvp_and_tangent_pass():
    """Under bf16 autocast the output and its derivatives are finite, in one dtype, and the
    backward pass runs (LayerNorm and attention in float32, the embedding with autocast off)."""
    shape = (3, 8, 8)
    net = off_zero_init(DiT(data_shape=shape, **TINY)).float()
    x, s, t = inputs(shape)
    tangent = (torch.zeros_like(x), torch.zeros_like(s), torch.ones_like(t))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, s, t)
        value, derivative = jvp(net, (x, s, t), tangent)
        value_pass, derivative_pass = net.tangent(x, s, t, None, None, tangent[2])
    assert out.shape == (3, 1, *shape) and torch.isfinite(out).all()
    for v, d in ((value, derivative), (value_pass, derivative_pass)):
        assert d.dtype == v.dtype and torch.isfinite(d).all()
    torch.testing.assert_close(derivative_pass.float(), derivative.float(), rtol=0.1, atol=0.1)
    (derivative.float().square().mean() + derivative_pass.float().square().mean()).backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


@attrs.frozen
class Blobs:
    """Labelled 1x8x8 images in memory: a bright square whose corner is set by the label."""

    data_shape: tuple[int, ...] = (1, 8, 8)
    num_classes: int | None = 4

    def sample(self, n, *, generator, device, dtype):
        label = torch.randint(0, 4, (n,), generator=generator)
        x1 = torch.full((n, *self.data_shape), -1.0)
        for k in range(4):
            rows, cols = slice(4 * (k // 2), 4 * (k // 2) + 4), slice(4 * (k % 2), 4 * (k % 2) + 4)
            x1[:, 0, rows, cols] += 2.0 * (label == k).to(x1.dtype)[:, None, None]
        x1 += 0.1 * torch.randn(x1.shape, generator=generator)
        return Batch(x1=x1.to(device=device, dtype=dtype), label=label.to(device))


@pytest.mark.parametrize("smoke", ["checkerboard_lsd", "gaussian_mixture_guided_lsd"], ids=["lsd", "guided_lsd"])
def test_trains_in_the_trainer_with_its_tangent_pass(smoke):
    """A smoke LSD run (d/dt by `derivative.tangent_pass`) with the DiT on small images learns;
    the guided one feeds it labels and guidance scales."""
    config.parse(
        [f"smoke/{smoke}.gin"],
        [
            "train.backbone = @backbone.dit",
            "backbone.dit.patch = 2",
            "backbone.dit.width = 16",
            "backbone.dit.depth = 1",
            "backbone.dit.attention_heads = 2",
            "train.batch_size = 32",
            "optimizer.adam.lr = 3e-3",
        ],
    )
    spec = attrs.evolve(runs.build_spec(), dataset=Blobs())
    assert type(spec.objective.off_diagonal.derivative).registry_name == "tangent_pass"
    trainer = Trainer(spec, progress=False)
    assert isinstance(trainer.net, DiT)
    losses = [trainer.optimise(trainer.draw()).loss for _ in range(25)]
    losses = torch.tensor([float(v) for v in losses])
    assert torch.isfinite(losses).all()
    assert losses[-5:].mean() < 0.8 * losses[:5].mean(), losses


def test_tangent_pass_compiles_whole_and_equals_eager():
    """The point of an explicit tangent pass: `torch.compile(fullgraph=True)` traces a loss on it
    (with labels and guidance), and its value and gradients equal eager's (AOT autograd backend)."""
    shape = (1, 8, 8)
    net = off_zero_init(DiT(data_shape=shape, num_classes=3, guidance=True, **TINY)).float()
    x, s, t = inputs(shape, batch=4)
    cond = {"label": torch.tensor([0, 1, -1, 2]), "guidance": torch.rand(4)}

    def loss(x, s, t):
        out, derivative = net.tangent(x, s, t, None, None, torch.ones_like(t), **cond)
        return derivative.square().mean() + out.square().mean()

    results = []
    for fn in (torch.compile(loss, fullgraph=True, backend="aot_eager"), loss):
        net.zero_grad()
        value = fn(x, s, t)
        value.backward()
        results.append((value.detach(), [p.grad.clone() for p in net.parameters()]))
    torch._dynamo.reset()
    (compiled, compiled_grads), (eager, eager_grads) = results
    torch.testing.assert_close(compiled, eager, rtol=1e-6, atol=1e-7)
    for a, b in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
