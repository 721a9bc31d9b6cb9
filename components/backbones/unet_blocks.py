"""The blocks of the UNet backbone: normalisation, residual block, self-attention, resampling.

Every block has a forward-mode derivative under `torch.func.jvp` (GroupNorm, SiLU,
convolutions, nearest upsampling; attention through the math kernel of
`scaled_dot_product_attention`, which `flowmap_core.autodiff.jvp` selects), and an
explicit tangent pass, `tangent(x, dx, ...)`, built from `tangent_rules` (a tangent of
None is zero, and a block whose inputs do not move computes none).
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowmap_components.backbones import tangent_rules as rules
from flowmap_components.backbones.tangent_rules import Tangent

SKIP_SCALE = math.sqrt(0.5)
"""Residual sums are scaled by 1/sqrt(2), as in DDPM++, to keep their variance."""


def _jvp_flash_attention():
    """The Triton attention kernel of the PyPI package `jvp-flash-attention` (forward, backward and
    forward-mode derivatives, on CUDA), where it is installed; None elsewhere."""
    try:
        from jvp_flash_attention.jvp_attention import attention
    except ImportError:
        return None
    return attention


JVP_FLASH_ATTENTION = _jvp_flash_attention()


def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Softmax attention of queries, keys and values `(batch, heads, tokens, head channels)`,
    in at least float32 with autocast off, returned in q's dtype: the JVP-aware path every
    backbone's attention takes.

    On CUDA with `jvp-flash-attention` installed it runs that fused kernel (forward-mode AD
    differentiates it without materialising the attention matrix); elsewhere
    `scaled_dot_product_attention` (whose math kernel `flowmap_core.autodiff.jvp` selects).
    Float32 with autocast off: under bfloat16 autocast on CUDA, the backward pass of a JVP
    through the math kernel's softmax fails on mixed dtypes ("expected input and grad types
    to match").
    """
    dtype = torch.promote_types(q.dtype, torch.float32)
    flash = q.is_cuda and JVP_FLASH_ATTENTION is not None
    kernel = JVP_FLASH_ATTENTION if flash else F.scaled_dot_product_attention
    with torch.autocast(q.device.type, enabled=False):
        return kernel(q.to(dtype), k.to(dtype), v.to(dtype)).to(q.dtype)


def attend_tangent(q: Tensor, k: Tensor, v: Tensor, dq: Tangent, dk: Tangent, dv: Tangent) -> tuple[Tensor, Tangent]:
    """`attend` and its tangent by the attention rule of `tangent_rules` (the math kernel, which
    compiles), in at least float32 with autocast off, returned in q's dtype."""
    dtype = torch.promote_types(q.dtype, torch.float32)

    def up(value: Tangent) -> Tangent:
        return None if value is None else value.to(dtype)

    with torch.autocast(q.device.type, enabled=False):
        out, d_out = rules.attention(up(q), up(k), up(v), up(dq), up(dk), up(dv))
    return out.to(q.dtype), None if d_out is None else d_out.to(q.dtype)


class GroupNorm(nn.GroupNorm):
    """GroupNorm computed in at least float32 and returned in the input's dtype.

    Under bfloat16 autocast, torch's GroupNorm of a bfloat16 input with float32 affine
    weights returns a bfloat16 value but a float32 forward-mode tangent, which the next
    convolution rejects inside `torch.func.jvp`; normalising in float32 and casting back
    keeps value and tangent in one dtype (and the statistics accurate). The input is made
    contiguous first: torch's forward-mode GroupNorm fails on a channels-last tensor.
    """

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.to(torch.promote_types(x.dtype, torch.float32)).contiguous()).to(x.dtype)


def group_norm(channels: int) -> GroupNorm:
    """GroupNorm with about `channels // 4` groups, at most 32 (the DDPM++ rule), rounded down
    to a divisor of `channels` so that any channel count works."""
    most = max(1, min(32, channels // 4))
    groups = max(g for g in range(1, most + 1) if channels % g == 0)
    return GroupNorm(groups, channels, eps=1e-6)


def zero_initialised(layer: nn.Conv2d) -> nn.Conv2d:
    """`layer` with weight and bias set to zero: a residual branch or output that starts at 0."""
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class ResidualBlock(nn.Module):
    """DDPM++ residual block with adaptive scale and shift.

    Main path: GroupNorm, SiLU, 3x3 conv; GroupNorm modulated by the embedding
    (`norm(h) * (1 + scale) + shift`, both from one linear map of the embedding), SiLU,
    dropout, 3x3 conv (zero-initialised, so a fresh block passes its skip path only).
    Skip path: identity, or a 1x1 conv where the channel count changes. Output: their sum
    times 1/sqrt(2).
    """

    def __init__(self, in_channels: int, out_channels: int, embedding_channels: int, dropout: float):
        super().__init__()
        self.norm0 = group_norm(in_channels)
        self.conv0 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.affine = nn.Linear(embedding_channels, 2 * out_channels)
        self.norm1 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = zero_initialised(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        scale, shift = self.affine(embedding)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm1(h) * (1 + scale) + shift)
        h = self.conv1(self.dropout(h))
        return (h + self.skip(x)) * SKIP_SCALE

    def tangent(self, x: Tensor, dx: Tangent, embedding: Tensor, d_embedding: Tangent) -> tuple[Tensor, Tangent]:
        """`forward` and its tangent; dropout applies one mask to both."""
        h, dh = rules.silu(*rules.group_norm(self.norm0, x, dx))
        h, dh = rules.conv2d(self.conv0, h, dh)
        modulation, d_modulation = rules.linear(self.affine, embedding, d_embedding)
        scale, shift = modulation[:, :, None, None].chunk(2, dim=1)
        h, dh = rules.group_norm(self.norm1, h, dh)
        d_modulated = rules.scale(dh, 1 + scale)
        if d_modulation is not None:
            d_scale, d_shift = d_modulation[:, :, None, None].chunk(2, dim=1)
            d_modulated = rules.add(d_modulated, h * d_scale, d_shift)
        h, dh = rules.silu(h * (1 + scale) + shift, d_modulated)
        if self.training and self.dropout.p > 0:
            mask = (torch.rand_like(h) >= self.dropout.p).to(h.dtype) / (1 - self.dropout.p)
            h, dh = h * mask, rules.scale(dh, mask)
        h, dh = rules.conv2d(self.conv1, h, dh)
        skip, d_skip = (x, dx) if isinstance(self.skip, nn.Identity) else rules.conv2d(self.skip, x, dx)
        return (h + skip) * SKIP_SCALE, rules.scale(rules.add(dh, d_skip), SKIP_SCALE)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels, as a residual branch.

    GroupNorm, a 1x1 conv to queries, keys and values, `scaled_dot_product_attention` with
    `channels // head_channels` heads (at least one), a 1x1 output conv (zero-initialised);
    the input plus that branch, times 1/sqrt(2).

    The attention itself goes through `attend` (`attend_tangent` in the tangent pass): in at
    least float32 with autocast off (attention runs only at low resolutions, so this costs
    little); on CUDA with `jvp-flash-attention` installed (`pip install 'flowmap[gpu]'`),
    `forward` uses its fused kernel, which forward-mode AD (`derivative.forward_ad`)
    differentiates without materialising the attention matrix; elsewhere, and in the explicit
    tangent pass (which must compile), the math kernel.
    """

    def __init__(self, channels: int, head_channels: int):
        super().__init__()
        self.heads = max(1, channels // head_channels)
        if channels % self.heads:
            raise ValueError(
                f"self-attention over {channels} channels with attention_head_channels={head_channels} gives "
                f"{self.heads} heads, which do not divide the channels; "
                f"choose attention_head_channels dividing {channels}"
            )
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = zero_initialised(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        qkv = self.qkv(self.norm(x)).reshape(batch, 3, self.heads, channels // self.heads, height * width)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (batch, heads, pixels, head channels)
        attended = attend(q, k, v).transpose(-1, -2).reshape(batch, channels, height, width)
        return (x + self.out(attended)) * SKIP_SCALE

    def tangent(self, x: Tensor, dx: Tangent) -> tuple[Tensor, Tangent]:
        """`forward` and its tangent (the attention rule of `tangent_rules`, in at least float32)."""
        if dx is None:
            return self(x), None
        batch, channels, height, width = x.shape
        qkv, d_qkv = rules.conv2d(self.qkv, *rules.group_norm(self.norm, x, dx))

        def heads(value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            value = value.reshape(batch, 3, self.heads, channels // self.heads, height * width)
            return value.transpose(-1, -2).unbind(1)

        attended, d_attended = (
            a.transpose(-1, -2).reshape(batch, channels, height, width)
            for a in attend_tangent(*heads(qkv), *heads(d_qkv))
        )
        out, d_out = rules.conv2d(self.out, attended, d_attended)
        return (x + out) * SKIP_SCALE, (dx + d_out) * SKIP_SCALE


class Block(nn.Module):
    """One step of a UNet level: a residual block, then self-attention where
    `attention_head_channels` is given (None: no attention at this level)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        embedding_channels: int,
        dropout: float,
        attention_head_channels: int | None,
    ):
        super().__init__()
        self.residual = ResidualBlock(in_channels, out_channels, embedding_channels, dropout)
        self.attention = (
            SelfAttention(out_channels, attention_head_channels) if attention_head_channels is not None else None
        )

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        h = self.residual(x, embedding)
        return self.attention(h) if self.attention is not None else h

    def tangent(self, x: Tensor, dx: Tangent, embedding: Tensor, d_embedding: Tangent) -> tuple[Tensor, Tangent]:
        h, dh = self.residual.tangent(x, dx, embedding, d_embedding)
        return self.attention.tangent(h, dh) if self.attention is not None else (h, dh)


class Downsample(nn.Module):
    """Halve height and width: a 3x3 conv with stride 2."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)

    def tangent(self, x: Tensor, dx: Tangent) -> tuple[Tensor, Tangent]:
        return rules.conv2d(self.conv, x, dx)


class Upsample(nn.Module):
    """Double height and width: nearest-neighbour upsampling, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))

    def tangent(self, x: Tensor, dx: Tangent) -> tuple[Tensor, Tangent]:
        def up(value: Tensor) -> Tensor:
            return F.interpolate(value, scale_factor=2.0, mode="nearest")

        return rules.conv2d(self.conv, up(x), None if dx is None else up(dx))
