"""A DiT (Peebles & Xie 2023) on images (x, s, t) -> (batch, heads, C, H, W), fit for JVPs."""

import math

import torch
from torch import Tensor, nn

from flowmap_components.backbones import tangent_rules as rules
from flowmap_components.backbones.dit_blocks import DiTBlock, FinalLayer, sincos_2d, xavier_patch_embedding
from flowmap_components.backbones.embedding import embed_conditions
from flowmap_components.backbones.output_scale import scale_affine
from flowmap_components.backbones.tangent_rules import Tangent
from flowmap_components.backbones.time_features import FourierTimeFeatures, fold_second_time
from flowmap_core.config import ConfigError
from flowmap_core.registry import register
from flowmap_core.typing import Data, Heads, Labels, Times, typechecked
from flowmap_core.validators import arguments, in_range, non_negative_integer, optional, positive, positive_integer

POSITIONAL = ("fixed", "learned")
"""The positional embeddings: the fixed 2D sin-cos table, or a parameter that starts at it."""


@register("backbone", "dit")
@arguments(
    heads=positive_integer,
    patch=positive_integer,
    width=in_range(4, integer=True),
    depth=positive_integer,
    attention_heads=positive_integer,
    mlp_ratio=positive,
    octaves=non_negative_integer,
    num_classes=optional(positive_integer),
)
class DiT(nn.Module):
    """A DiT transformer on patches of images `data_shape = (C, H, W)`, with adaLN-zero on s and t.

    DiT: Peebles & Xie 2023, "Scalable Diffusion Models with Transformers"; here conditioned
    on both times of the flow map (and optionally a class and a guidance scale).

    Layout (DiT section 3): a patch embedding (a conv with kernel = stride = `patch`) cuts the
    image into (H / patch) x (W / patch) tokens of `width` channels; a positional embedding
    is added (`positional = 'fixed'`: the 2D sin-cos table, a buffer; `'learned'`: a
    parameter that starts at that table); `depth` transformer blocks with adaLN-zero
    (`dit_blocks.DiTBlock`: LayerNorm without affine, shift and scale from the embedding,
    multi-head self-attention with `attention_heads` heads, a gate; the same around an MLP of
    `mlp_ratio * width` GELU units); the final layer (adaLN LayerNorm and a Linear to
    `patch * patch * heads * C` values per token) and un-patchify. The modulations, and so the
    gates, start at zero, as does the final Linear: a fresh network outputs exactly zero (the
    initial map is the identity, its velocity zero). Other Linear layers and the patch
    embedding are Xavier-uniform, the embedding MLP and label table N(0, 0.02^2), as in DiT.

    Embedding (the same as `backbone.unet`'s): `octaves` Fourier octaves of s and of t
    (`FourierTimeFeatures`), concatenated, through Linear, SiLU, Linear, SiLU to `width`
    channels; DiT embeds one time, a flow map needs two. With `num_classes`, a learned
    embedding of the label (-1: no class, an extra row) is added after the first Linear; with
    `guidance`, Fourier features of the guidance scale w join the times' features. The
    embedding computes with autocast off (sCM, Lu and Song 2024: unstable JVPs came from
    high-frequency time features in low precision); LayerNorm and attention compute in at
    least float32 and cast back, so JVPs and their backward pass run under bfloat16 autocast.
    Attention goes through `unet_blocks.attend` (the `jvp-flash-attention` kernel on CUDA
    where installed, which forward-mode AD differentiates without the attention matrix).

    Parameters:
        data_shape: (channels, height, width) of the images (or latents); height and width
            must divide by `patch`.
        heads: number of `C`-channel outputs (from the parameterisation).
        patch: side of the square patches (DiT-*/2: 2).
        width: channels of the tokens and of the embedding (DiT's hidden size; must divide
            by 4 for the 2D sin-cos table, and by `attention_heads`).
        depth: number of transformer blocks.
        attention_heads: heads of each self-attention (named so because `heads` counts
            outputs).
        mlp_ratio: hidden units of each MLP, as a multiple of `width`.
        positional: 'fixed' or 'learned' (see above).
        octaves: Fourier octaves of each time.
        num_classes: number of classes for class-conditional maps (None: unconditional).
        guidance: whether the network takes a guidance scale per example.

    The defaults are DiT-S/2 (width 384, depth 12, 6 heads, patch 2); DiT-B/2 is width 768,
    depth 12, 12 heads.

    `tangent(x, s, t, dx, ds, dt, ...)` is the explicit tangent pass
    (`flowmap_core.protocols.HasTangentPass`): the forward pass and its derivative along
    (dx, ds, dt), block by block (`tangent_rules`). With dx = 0 (d/dt, d/ds) the tangent
    enters at the embedding, through every block's modulation, and the patch embedding
    computes none.
    """

    def __init__(
        self,
        *,
        data_shape: tuple[int, ...],
        heads: int = 1,
        patch: int = 2,
        width: int = 384,
        depth: int = 12,
        attention_heads: int = 6,
        mlp_ratio: float = 4.0,
        positional: str = "fixed",
        octaves: int = 8,
        num_classes: int | None = None,
        guidance: bool = False,
    ):
        super().__init__()
        data_shape = tuple(data_shape)
        if len(data_shape) != 3:
            raise ConfigError(f"backbone.dit needs data_shape (channels, height, width), got {data_shape}")
        if not isinstance(guidance, bool):
            raise ConfigError(f"backbone.dit.guidance must be True or False, got {guidance!r}")
        if int(width * mlp_ratio) < 1:
            raise ConfigError(f"backbone.dit.mlp_ratio must leave width * mlp_ratio >= 1 unit, got {mlp_ratio!r}")
        if positional not in POSITIONAL:
            raise ConfigError(
                f"backbone.dit.positional: unknown positional embedding {positional!r}; known: {', '.join(POSITIONAL)}"
            )
        if width % 4 or width % attention_heads:
            raise ConfigError(
                f"backbone.dit.width = {width} must divide by 4 (the 2D sin-cos table) and by "
                f"attention_heads = {attention_heads}"
            )
        image_channels, height, image_width = data_shape
        if height % patch or image_width % patch:
            fits = [p for p in range(1, min(height, image_width) + 1) if not height % p and not image_width % p]
            raise ConfigError(
                f"backbone.dit.patch = {patch} must divide the image's height and width, got {height}x{image_width}; "
                f"patches that fit: {', '.join(map(str, fits))}"
            )
        self.data_shape = data_shape
        self.heads = heads
        self.patch = patch
        self.grid = (height // patch, image_width // patch)
        self.num_classes = num_classes

        self.patch_embedding = nn.Conv2d(image_channels, width, patch, stride=patch)
        xavier_patch_embedding(self.patch_embedding)
        table = sincos_2d(width, *self.grid).to(torch.get_default_dtype())
        if positional == "learned":
            self.positional = nn.Parameter(table)
        else:
            self.register_buffer("positional", table, persistent=False)

        self.time_features = FourierTimeFeatures(octaves)
        self.guidance_features = FourierTimeFeatures(4, base_frequency=math.pi / 8) if guidance else None
        features = 2 * self.time_features.dim
        if self.guidance_features is not None:
            features += self.guidance_features.dim
        self.embedding_in = nn.Linear(features, width)
        if num_classes is not None:  # one more row: the null label -1, "no class"
            self.label_embedding = nn.Embedding(num_classes + 1, width)
            nn.init.normal_(self.label_embedding.weight, std=0.02)
        self.embedding_out = nn.Linear(width, width)
        for layer in (self.embedding_in, self.embedding_out):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)

        self.blocks = nn.ModuleList(DiTBlock(width, attention_heads, mlp_ratio) for _ in range(depth))
        self.final = FinalLayer(width, patch * patch * heads * image_channels)

    def embed(self, s: Tensor, t: Tensor, label: Tensor | None, guidance: Tensor | None) -> Tensor:
        """The conditioning embedding `(batch, width)` of the times, label and guidance scale,
        after SiLU (the SiLU of DiT's adaLN modulation, shared by every block)."""
        return self._embed(s, t, None, None, label, guidance)[0]

    def _embed(
        self, s: Tensor, t: Tensor, ds: Tangent, dt: Tangent, label: Tensor | None, guidance: Tensor | None
    ) -> tuple[Tensor, Tangent]:
        """`embed` and its tangent in (ds, dt) (`embed_conditions`)."""
        return embed_conditions(self, s, t, ds, dt, label, guidance)

    def _tokens(self, x: Tensor, dx: Tangent) -> tuple[Tensor, Tangent]:
        """Patch embedding plus positional embedding: `(batch, tokens, width)`, row-major tokens."""
        h, dh = rules.conv2d(self.patch_embedding, x, dx)
        h = h.flatten(2).transpose(1, 2) + self.positional
        return h, None if dh is None else dh.flatten(2).transpose(1, 2)

    def _image(self, tokens: Tensor) -> Tensor:
        """Un-patchify `(batch, tokens, patch * patch * heads * C)` to `(batch, heads, C, H, W)`."""
        rows, cols = self.grid
        p, channels = self.patch, self.heads * self.data_shape[0]
        image = tokens.reshape(tokens.shape[0], rows, cols, p, p, channels).permute(0, 5, 1, 3, 2, 4)
        return image.reshape(tokens.shape[0], self.heads, self.data_shape[0], rows * p, cols * p)

    @typechecked
    def forward(self, x: Data, s: Times, t: Times, label: Labels | None = None, guidance: Times | None = None) -> Heads:
        c = self.embed(s, t, label, guidance)
        h = self.patch_embedding(x).flatten(2).transpose(1, 2) + self.positional
        for block in self.blocks:
            h = block(h, c)
        return self._image(self.final(h, c))

    def fold_second_time(self) -> None:
        """From now on forward(x, s, t) = the current forward(x, s, s) (`time_features.fold_second_time`)."""
        fold_second_time(self.embedding_in, 0, self.time_features.dim)

    def scale_output(self, factor: float) -> None:
        """From now on forward = `factor` times the current forward (`output_scale.scale_affine`)."""
        scale_affine(self.final.linear, factor)

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
        c, dc = self._embed(s, t, ds, dt, label, guidance)
        h, dh = self._tokens(x, dx)
        for block in self.blocks:
            h, dh = block.tangent(h, dh, c, dc)
        out, d_out = self.final.tangent(h, dh, c, dc)
        d_out = torch.zeros_like(out) if d_out is None else d_out
        return self._image(out), self._image(d_out)
