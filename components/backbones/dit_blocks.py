"""The blocks of the DiT backbone (Peebles & Xie 2023, "Scalable Diffusion Models with
Transformers"): LayerNorm, adaLN modulation, self-attention, MLP, the adaLN-zero block and
the final layer, and the fixed 2D sin-cos positional embedding.

Tokens are `(batch, tokens, width)`; the conditioning embedding `c` is `(batch, width)`,
already passed through SiLU (DiT's `adaLN_modulation` is SiLU then Linear; the SiLU is
shared by every block, so it is applied once, in the backbone). Every block has a
forward-mode derivative under `torch.func.jvp` and an explicit tangent pass,
`tangent(h, dh, c, dc)`, built from `tangent_rules` (a tangent of None is zero).
"""

import torch
from torch import Tensor, nn

from flowmap_components.backbones import tangent_rules as rules
from flowmap_components.backbones.tangent_rules import Tangent
from flowmap_components.backbones.unet_blocks import attend, attend_tangent


class LayerNorm(nn.LayerNorm):
    """LayerNorm without an affine map (DiT's `elementwise_affine=False`, eps 1e-6), computed
    in at least float32 and returned in the input's dtype, so that value and forward-mode
    tangent keep one dtype under bfloat16 autocast (as the UNet's GroupNorm does)."""

    def __init__(self, width: int):
        super().__init__(width, eps=1e-6, elementwise_affine=False)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.to(torch.promote_types(x.dtype, torch.float32))).to(x.dtype)


def zero_linear(fan_in: int, fan_out: int) -> nn.Linear:
    """A Linear layer whose weight and bias start at zero (adaLN-zero modulations, the output)."""
    layer = nn.Linear(fan_in, fan_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def modulate(h: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: `h (1 + scale) + shift`, with shift and scale `(batch, 1, width)` per example."""
    return h * (1 + scale) + shift


def modulate_tangent(
    h: Tensor, dh: Tangent, shift: Tensor, scale: Tensor, d_shift: Tangent, d_scale: Tangent
) -> tuple[Tensor, Tangent]:
    """`modulate` and its tangent: dh (1 + scale) + h d_scale + d_shift."""
    return modulate(h, shift, scale), rules.add(
        rules.scale(dh, 1 + scale), None if d_scale is None else h * d_scale, d_shift
    )


def gated_tangent(h: Tensor, dh: Tangent, branch: Tensor, d_branch: Tangent, gate: Tensor, d_gate: Tangent):
    """The gated residual `h + gate * branch` and its tangent."""
    return h + gate * branch, rules.add(dh, rules.scale(d_branch, gate), None if d_gate is None else d_gate * branch)


def chunks(modulation: Tensor, d_modulation: Tangent, n: int) -> tuple[list[Tensor], list[Tangent]]:
    """Split a modulation `(batch, n * width)` into n pieces `(batch, 1, width)`, tangents alike."""
    values = list(modulation.unsqueeze(1).chunk(n, dim=-1))
    tangents = [None] * n if d_modulation is None else list(d_modulation.unsqueeze(1).chunk(n, dim=-1))
    return values, tangents


class Attention(nn.Module):
    """Multi-head self-attention over the tokens: one Linear to queries, keys and values,
    `attend` (the JVP-aware path of `unet_blocks`: at least float32 with autocast off, the
    `jvp-flash-attention` kernel on CUDA where installed), and an output Linear."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def _split(self, qkv: Tensor) -> tuple[Tensor, ...]:
        batch, tokens, _ = qkv.shape
        qkv = qkv.reshape(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        return tuple(qkv.unbind(0))  # each (batch, heads, tokens, head channels)

    @staticmethod
    def _merge(attended: Tensor) -> Tensor:
        return attended.transpose(1, 2).flatten(2)

    def forward(self, h: Tensor) -> Tensor:
        return self.out(self._merge(attend(*self._split(self.qkv(h)))))

    def tangent(self, h: Tensor, dh: Tangent) -> tuple[Tensor, Tangent]:
        """`forward` and its tangent (the attention rule through `attend_tangent`)."""
        if dh is None:
            return self(h), None
        qkv, d_qkv = rules.linear(self.qkv, h, dh)
        attended, d_attended = attend_tangent(*self._split(qkv), *self._split(d_qkv))
        return rules.linear(self.out, self._merge(attended), self._merge(d_attended))


class MLP(nn.Module):
    """Linear to `hidden` units, GELU (the exact, erf form: DiT uses the tanh approximation,
    which has no tangent rule here), Linear back to `width`."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.activation = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, h: Tensor) -> Tensor:
        return self.fc2(self.activation(self.fc1(h)))

    def tangent(self, h: Tensor, dh: Tangent) -> tuple[Tensor, Tangent]:
        return rules.linear(self.fc2, *rules.gelu(*rules.linear(self.fc1, h, dh)))


class DiTBlock(nn.Module):
    """A DiT block with adaLN-zero conditioning.

    From the conditioning embedding, one zero-initialised Linear gives six modulations
    (shift, scale, gate for attention, and again for the MLP); then
        h = h + gate_a * Attention(LayerNorm(h) (1 + scale_a) + shift_a)
        h = h + gate_m * MLP(LayerNorm(h) (1 + scale_m) + shift_m)
    The gates start at zero, so a fresh block is the identity ("adaLN-zero", DiT section 3.2).
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = LayerNorm(width)
        self.attention = Attention(width, heads)
        self.norm2 = LayerNorm(width)
        self.mlp = MLP(width, int(width * mlp_ratio))
        xavier_linears(self.attention)
        xavier_linears(self.mlp)
        self.modulation = zero_linear(width, 6 * width)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.modulation(c).unsqueeze(1).chunk(6, dim=-1)
        h = h + gate_a * self.attention(modulate(self.norm1(h), shift_a, scale_a))
        return h + gate_m * self.mlp(modulate(self.norm2(h), shift_m, scale_m))

    def tangent(self, h: Tensor, dh: Tangent, c: Tensor, dc: Tangent) -> tuple[Tensor, Tangent]:
        values, tangents = chunks(*rules.linear(self.modulation, c, dc), 6)
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = values
        d_shift_a, d_scale_a, d_gate_a, d_shift_m, d_scale_m, d_gate_m = tangents
        a, da = modulate_tangent(*rules.layer_norm(self.norm1, h, dh), shift_a, scale_a, d_shift_a, d_scale_a)
        h, dh = gated_tangent(h, dh, *self.attention.tangent(a, da), gate_a, d_gate_a)
        m, dm = modulate_tangent(*rules.layer_norm(self.norm2, h, dh), shift_m, scale_m, d_shift_m, d_scale_m)
        return gated_tangent(h, dh, *self.mlp.tangent(m, dm), gate_m, d_gate_m)


class FinalLayer(nn.Module):
    """DiT's final layer: LayerNorm modulated by a shift and scale from the embedding (adaLN),
    then a Linear to `out_features` per token (the patch's pixels of every output channel).
    Both the modulation and the Linear start at zero, so a fresh network outputs zero."""

    def __init__(self, width: int, out_features: int):
        super().__init__()
        self.norm = LayerNorm(width)
        self.modulation = zero_linear(width, 2 * width)
        self.linear = zero_linear(width, out_features)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.modulation(c).unsqueeze(1).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(h), shift, scale))

    def tangent(self, h: Tensor, dh: Tangent, c: Tensor, dc: Tangent) -> tuple[Tensor, Tangent]:
        (shift, scale), (d_shift, d_scale) = chunks(*rules.linear(self.modulation, c, dc), 2)
        return rules.linear(
            self.linear, *modulate_tangent(*rules.layer_norm(self.norm, h, dh), shift, scale, d_shift, d_scale)
        )


def sincos_2d(width: int, grid_height: int, grid_width: int) -> Tensor:
    """The fixed 2D sin-cos positional embedding `(grid_height * grid_width, width)` of DiT
    (and MAE), tokens in row-major order: a quarter of the channels are sin and a quarter cos
    of the row index at frequencies 10000^(-k / (width / 4)), k < width / 4; the other half
    the same of the column index. Computed in float64; `width` must divide by 4."""
    quarter = width // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(grid_height, dtype=torch.float64), torch.arange(grid_width, dtype=torch.float64), indexing="ij"
    )
    parts = []
    for position in (rows.flatten(), cols.flatten()):
        angles = position[:, None] * omega[None, :]
        parts += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=1)


def xavier_linears(module: nn.Module) -> None:
    """DiT's basic initialisation: every Linear in `module` Xavier-uniform, bias zero."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


def xavier_patch_embedding(conv: nn.Conv2d) -> None:
    """DiT initialises the patch embedding like a Linear on the flattened patch."""
    nn.init.xavier_uniform_(conv.weight.view(conv.weight.shape[0], -1))
    nn.init.zeros_(conv.bias)
