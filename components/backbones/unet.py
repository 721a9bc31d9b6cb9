"""A DDPM++ / EDM-style UNet on images (x, s, t) -> (batch, heads, C, H, W), fit for JVPs."""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowmap_components.backbones import tangent_rules as rules
from flowmap_components.backbones.embedding import embed_conditions
from flowmap_components.backbones.output_scale import scale_affine
from flowmap_components.backbones.tangent_rules import Tangent
from flowmap_components.backbones.time_features import FourierTimeFeatures, fold_second_time
from flowmap_components.backbones.unet_blocks import Block, Downsample, Upsample, group_norm, zero_initialised
from flowmap_core.registry import register
from flowmap_core.typing import Data, Heads, Labels, Times, typechecked
from flowmap_core.validators import arguments, in_range, non_negative_integer, optional, positive_integer


@register("backbone", "unet")
@arguments(
    heads=positive_integer,
    channels=positive_integer,
    blocks=positive_integer,
    attention_head_channels=positive_integer,
    dropout=in_range(0.0, 1.0, high_open=True),
    octaves=non_negative_integer,
    embedding_channels=optional(positive_integer),
    num_classes=optional(positive_integer),
)
class UNet(nn.Module):
    """A DDPM++ / EDM-style UNet for images of shape `data_shape = (C, H, W)`.

    Layout: a 3x3 input conv; an encoder with one level per entry of
    `channel_multipliers`, each `blocks` residual blocks of `channels * multiplier`
    channels, and a stride-2 conv halving the size between levels; a middle of two
    residual blocks; a decoder mirroring the encoder with `blocks + 1` residual blocks per
    level, each fed the previous output concatenated with an encoder activation (skip
    connection), and nearest upsampling plus a 3x3 conv between levels; GroupNorm, SiLU and
    a 3x3 output conv to `heads * C` channels. The output conv starts at zero, so a fresh
    network outputs exactly zero (the initial map is the identity, its velocity zero); the
    last conv of each residual and attention branch starts at zero as well.

    Blocks (`components.backbones.unet_blocks`): residual blocks are GroupNorm, SiLU, 3x3
    conv, GroupNorm with an adaptive scale and shift from the embedding, SiLU, dropout,
    3x3 conv. Levels whose resolution (height in pixels: H, H/2, ...) is listed in
    `attention_resolutions` follow each residual block with multi-head self-attention
    (`scaled_dot_product_attention`, `attention_head_channels` channels per head); the
    middle's first block has attention if the lowest resolution is listed.

    Embedding: `octaves` Fourier octaves of s and of t (see `FourierTimeFeatures`),
    concatenated, through Linear, SiLU, Linear, SiLU to `embedding_channels` (default
    `4 * channels`). With `num_classes`, a learned embedding of the label (-1: no class,
    an extra row) is added after the first Linear; with `guidance`, Fourier features of
    the guidance scale w join the times' features.

    Parameters:
        data_shape: (channels, height, width) of the images.
        heads: number of `C`-channel outputs (from the parameterisation).
        channels: base channel count.
        channel_multipliers: channels of each level, as multiples of `channels`; with L
            entries, H and W must divide by 2^(L-1) (28x28: at most 3 levels).
        blocks: residual blocks per level in the encoder (the decoder has one more).
        attention_resolutions: resolutions (in pixels) with self-attention, e.g. (7,) or (16, 8).
        attention_head_channels: channels per attention head (fewer channels: one head).
        dropout: dropout rate inside the residual blocks.
        octaves: Fourier octaves of each time.
        embedding_channels: width of the time (and label, guidance) embedding.
        num_classes: number of classes for class-conditional maps (None: unconditional).
        guidance: whether the network takes a guidance scale per example.
        channels_last: keep weights and activations in the channels-last memory layout,
            which bfloat16 convolutions on recent GPUs run faster in (same values).

    GroupNorm and attention compute in at least float32 and cast back, so that JVPs and
    their backward pass run under bfloat16 autocast (see `unet_blocks`); the time embedding
    computes with autocast off (sCM, Lu and Song 2024, traced unstable JVPs to
    high-frequency time features in low precision).

    `tangent(x, s, t, dx, ds, dt, ...)` is the explicit tangent pass
    (`flowmap_core.protocols.HasTangentPass`): the forward pass and its derivative along
    (dx, ds, dt), block by block (`tangent_rules`). With dx = 0 (d/dt, d/ds) the tangent
    enters at the embedding, and the input convolution computes none.

    The defaults are the sizes of the paper's CelebA-64 network (128 channels,
    multipliers 1, 2, 3, 4, 3 blocks, attention at 16 and 8).
    """

    def __init__(
        self,
        *,
        data_shape: tuple[int, ...],
        heads: int = 1,
        channels: int = 128,
        channel_multipliers: tuple[int, ...] = (1, 2, 3, 4),
        blocks: int = 3,
        attention_resolutions: tuple[int, ...] = (16, 8),
        attention_head_channels: int = 64,
        dropout: float = 0.0,
        octaves: int = 8,
        embedding_channels: int | None = None,
        num_classes: int | None = None,
        guidance: bool = False,
        channels_last: bool = False,
    ):
        super().__init__()
        data_shape, channel_multipliers = tuple(data_shape), tuple(channel_multipliers)
        attention_resolutions = tuple(attention_resolutions)
        if len(data_shape) != 3:
            raise ValueError(f"UNet needs data_shape (channels, height, width), got {data_shape}")
        if not channel_multipliers or min(channel_multipliers) < 1:
            raise ValueError(f"UNet needs one or more channel_multipliers >= 1, got {channel_multipliers}")
        image_channels, height, width = data_shape
        levels = len(channel_multipliers)
        factor = 2 ** (levels - 1)
        if height % factor or width % factor:
            most = 1 + min(_twos(height), _twos(width))
            raise ValueError(
                f"a UNet with {levels} channel_multipliers halves the image {levels - 1} times, so height and width "
                f"must divide by {factor}; got {height}x{width}: use at most {most} channel_multipliers, "
                "or pad the images"
            )
        self.resolutions = tuple(height // 2**level for level in range(levels))
        unused = sorted(set(attention_resolutions) - set(self.resolutions))
        if unused:
            raise ValueError(
                f"attention_resolutions {unused} are not resolutions of this UNet; "
                f"its levels have heights {', '.join(map(str, self.resolutions))}"
            )
        self.data_shape = data_shape
        self.heads = heads
        self.num_classes = num_classes
        if embedding_channels is None:
            embedding_channels = 4 * channels

        self.time_features = FourierTimeFeatures(octaves)
        self.guidance_features = FourierTimeFeatures(4, base_frequency=math.pi / 8) if guidance else None
        features = 2 * self.time_features.dim
        if self.guidance_features is not None:
            features += self.guidance_features.dim
        self.embedding_in = nn.Linear(features, embedding_channels)
        if num_classes is not None:  # one more row: the null label -1, "no class"
            self.label_embedding = nn.Embedding(num_classes + 1, embedding_channels)
        self.embedding_out = nn.Linear(embedding_channels, embedding_channels)

        def block(in_channels: int, out_channels: int, level: int, attention: bool = True) -> Block:
            with_attention = attention and self.resolutions[level] in attention_resolutions
            return Block(
                in_channels,
                out_channels,
                embedding_channels,
                dropout,
                attention_head_channels if with_attention else None,
            )

        width_now = channels * channel_multipliers[0]
        self.input_conv = nn.Conv2d(image_channels, width_now, 3, padding=1)
        skip_channels = [width_now]
        self.encoder, self.downsample = nn.ModuleList(), nn.ModuleList()
        for level, multiplier in enumerate(channel_multipliers):
            if level > 0:
                self.downsample.append(Downsample(width_now))
                skip_channels.append(width_now)
            level_blocks = nn.ModuleList()
            for _ in range(blocks):
                level_blocks.append(block(width_now, channels * multiplier, level))
                width_now = channels * multiplier
                skip_channels.append(width_now)
            self.encoder.append(level_blocks)
        lowest = levels - 1
        self.middle = nn.ModuleList(
            [block(width_now, width_now, lowest), block(width_now, width_now, lowest, attention=False)]
        )
        self.decoder, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(levels)):
            level_blocks = nn.ModuleList()
            out_channels = channels * channel_multipliers[level]
            for _ in range(blocks + 1):
                level_blocks.append(block(width_now + skip_channels.pop(), out_channels, level))
                width_now = out_channels
            self.decoder.append(level_blocks)
            if level > 0:
                self.upsample.append(Upsample(width_now))
        self.output_norm = group_norm(width_now)
        self.output_conv = zero_initialised(nn.Conv2d(width_now, heads * image_channels, 3, padding=1))
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def embed(self, s: Tensor, t: Tensor, label: Tensor | None, guidance: Tensor | None) -> Tensor:
        """The embedding `(batch, embedding_channels)` of the times, label and guidance scale."""
        return self._embed(s, t, None, None, label, guidance)[0]

    def _embed(
        self, s: Tensor, t: Tensor, ds: Tangent, dt: Tangent, label: Tensor | None, guidance: Tensor | None
    ) -> tuple[Tensor, Tangent]:
        """`embed` and its tangent in (ds, dt) (`embed_conditions`)."""
        return embed_conditions(self, s, t, ds, dt, label, guidance)

    @typechecked
    def forward(self, x: Data, s: Times, t: Times, label: Labels | None = None, guidance: Times | None = None) -> Heads:
        embedding = self.embed(s, t, label, guidance)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.input_conv(x)
        skips = [h]
        for level, level_blocks in enumerate(self.encoder):
            if level > 0:
                h = self.downsample[level - 1](h)
                skips.append(h)
            for block in level_blocks:
                h = block(h, embedding)
                skips.append(h)
        for block in self.middle:
            h = block(h, embedding)
        for level, level_blocks in enumerate(self.decoder):
            for block in level_blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), embedding)
            if level < len(self.upsample):
                h = self.upsample[level](h)
        out = self.output_conv(F.silu(self.output_norm(h)))
        return out.unflatten(1, (self.heads, self.data_shape[0]))

    def fold_second_time(self) -> None:
        """From now on forward(x, s, t) = the current forward(x, s, s) (`time_features.fold_second_time`)."""
        fold_second_time(self.embedding_in, 0, self.time_features.dim)

    def scale_output(self, factor: float) -> None:
        """From now on forward = `factor` times the current forward (`output_scale.scale_affine`)."""
        scale_affine(self.output_conv, factor)

    def tangent(
        self,
        x: Tensor,
        s: Tensor,
        t: Tensor,
        dx: Tensor | None,
        ds: Tensor | None,
        dt: Tensor | None,
        label: Tensor | None = None,
        guidance: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """`forward` and its derivative along (dx, ds, dt), block by block."""
        embedding, d_embedding = self._embed(s, t, ds, dt, label, guidance)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            dx = None if dx is None else dx.contiguous(memory_format=torch.channels_last)
        h, dh = rules.conv2d(self.input_conv, x, dx)
        skips = [(h, dh)]
        for level, level_blocks in enumerate(self.encoder):
            if level > 0:
                h, dh = self.downsample[level - 1].tangent(h, dh)
                skips.append((h, dh))
            for block in level_blocks:
                h, dh = block.tangent(h, dh, embedding, d_embedding)
                skips.append((h, dh))
        for block in self.middle:
            h, dh = block.tangent(h, dh, embedding, d_embedding)
        for level, level_blocks in enumerate(self.decoder):
            for block in level_blocks:
                skip, d_skip = skips.pop()
                h, dh = block.tangent(*rules.cat([h, skip], [dh, d_skip], dim=1), embedding, d_embedding)
            if level < len(self.upsample):
                h, dh = self.upsample[level].tangent(h, dh)
        out, d_out = rules.conv2d(self.output_conv, *rules.silu(*rules.group_norm(self.output_norm, h, dh)))
        d_out = torch.zeros_like(out) if d_out is None else d_out
        shape = (self.heads, self.data_shape[0])
        return out.unflatten(1, shape), d_out.unflatten(1, shape)


def _twos(n: int) -> int:
    """How many times `n` divides by 2."""
    return (n & -n).bit_length() - 1
