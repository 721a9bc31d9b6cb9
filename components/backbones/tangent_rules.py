"""Tangent rules: each layer's forward pass together with its forward-mode derivative.

A rule takes a layer's input `h` and its tangent `dh` (the derivative of `h` along one
direction of the network's inputs; None means zero) and returns `(y, dy)`: the layer's
output and its tangent, computed with ordinary differentiable ops. Chaining the rules
through a backbone is an explicit tangent pass (`flowmap_core.protocols.HasTangentPass`):
the same numbers as `torch.func.jvp`, but plain ops that `torch.compile` traces whole and
that backpropagate like a forward pass. Parameters have no tangent (we differentiate in
the inputs x, s, t), so a linear layer's tangent is the layer without its bias:

    Linear:     dy = dh W^T                        Conv:  dy = conv(dh, W), no bias
    SiLU:       dy = dh * sigma(z) (1 + z (1 - sigma(z)))
    GELU:       dy = dh * (Phi(z) + z phi(z))      (exact, erf form)
    GroupNorm:  with x^ = (x - mean) / std per group,
                dy = gamma * (dx - mean(dx) - x^ mean(x^ dx)) / std
    LayerNorm:  the same over the last dims, per token: y = gamma x^ + b,
                dy = gamma * (dx - mean(dx) - x^ mean(x^ dx)) / std
    Attention:  S = Q K^T / sqrt(d), P = softmax(S), O = P V,
                dS = (dQ K^T + Q dK^T) / sqrt(d), dP = P (dS - rowsum(P dS)), dO = dP V + P dV
    Fourier:    [t, sin(w t), cos(w t)] -> [dt, w cos(w t) dt, -w sin(w t) dt]

`tests/components/test_tangent_rules.py` holds every rule to `torch.func.jvp` in float64.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Tangent = Tensor | None
"""A tangent; None is the zero tangent (no work is done for it)."""


def add(*tangents: Tangent) -> Tangent:
    """The sum of tangents, None where all are zero."""
    present = [d for d in tangents if d is not None]
    if not present:
        return None
    total = present[0]
    for d in present[1:]:
        total = total + d
    return total


def scale(d: Tangent, factor: Tensor | float) -> Tangent:
    """`d * factor` (zero stays zero)."""
    return None if d is None else d * factor


def cat(values: list[Tensor], tangents: list[Tangent], dim: int) -> tuple[Tensor, Tangent]:
    """Concatenation along `dim`; zero tangents are filled in where another is not zero."""
    y = torch.cat(values, dim=dim)
    if all(d is None for d in tangents):
        return y, None
    return y, torch.cat([torch.zeros_like(v) if d is None else d for v, d in zip(values, tangents, strict=True)], dim)


def linear(layer: nn.Linear, h: Tensor, dh: Tangent) -> tuple[Tensor, Tangent]:
    """Linear: y = h W^T + b, dy = dh W^T."""
    return layer(h), None if dh is None else F.linear(dh, layer.weight)


def conv2d(layer: nn.Conv2d, h: Tensor, dh: Tangent) -> tuple[Tensor, Tangent]:
    """2D convolution: y = conv(h, W) + b, dy = conv(dh, W)."""
    if dh is None:
        return layer(h), None
    return layer(h), layer._conv_forward(dh, layer.weight, None)


def silu(z: Tensor, dz: Tangent) -> tuple[Tensor, Tangent]:
    """SiLU: y = z sigma(z), dy = dz sigma(z) (1 + z (1 - sigma(z)))."""
    if dz is None:
        return F.silu(z), None
    sigma = torch.sigmoid(z)
    return z * sigma, dz * (sigma * (1 + z * (1 - sigma)))


def gelu(z: Tensor, dz: Tangent) -> tuple[Tensor, Tangent]:
    """GELU (exact): y = z Phi(z), dy = dz (Phi(z) + z phi(z))."""
    if dz is None:
        return F.gelu(z), None
    cdf = 0.5 * (1 + torch.erf(z * (1 / math.sqrt(2))))
    pdf = torch.exp(-0.5 * z * z) * (1 / math.sqrt(2 * math.pi))
    return z * cdf, dz * (cdf + z * pdf)


def relu(z: Tensor, dz: Tangent) -> tuple[Tensor, Tangent]:
    """ReLU: dy = dz where z > 0."""
    return F.relu(z), None if dz is None else dz * (z > 0).to(dz.dtype)


def tanh(z: Tensor, dz: Tangent) -> tuple[Tensor, Tangent]:
    """Tanh: dy = dz (1 - tanh(z)^2)."""
    y = torch.tanh(z)
    return y, None if dz is None else dz * (1 - y * y)


ACTIVATION_RULES = {nn.GELU: gelu, nn.SiLU: silu, nn.ReLU: relu, nn.Tanh: tanh}
"""The rule of each activation module (nn.GELU only with approximate='none')."""


def activation(module: nn.Module, z: Tensor, dz: Tangent) -> tuple[Tensor, Tangent]:
    """The rule of an activation module from `ACTIVATION_RULES`."""
    if isinstance(module, nn.GELU) and module.approximate != "none":
        raise TypeError("the tangent rule of GELU is for approximate='none'")
    return ACTIVATION_RULES[type(module)](z, dz)


def group_norm(norm: nn.GroupNorm, x: Tensor, dx: Tangent) -> tuple[Tensor, Tangent]:
    """GroupNorm in at least float32, cast back to x's dtype; the tangent by the rule above.

    Two orders of reduction compute the same numbers. Under `torch.compile`, inductor lays
    activations out channels-last around oneDNN convolutions, and moments over a group
    (channels and positions together) cut across that order: its loops then gather element
    by element. There the rule takes per-channel moments, which run along the memory order
    (`group_norm_by_channel`). Eager tensors are channel-major, where normalising each group
    directly dispatches fewer ops (`group_norm_by_group`).
    """
    if dx is None:
        return norm(x), None
    rule = group_norm_by_channel if torch.compiler.is_compiling() else group_norm_by_group
    return rule(norm, x, dx)


def group_norm_by_group(norm: nn.GroupNorm, x: Tensor, dx: Tensor) -> tuple[Tensor, Tensor]:
    """`group_norm` with each group's moments taken over its channels and positions at once."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    batch, channels = x.shape[:2]
    groups = x.to(dtype).reshape(batch, norm.num_groups, -1)
    d_groups = dx.to(dtype).reshape(batch, norm.num_groups, -1)
    mean = groups.mean(-1, keepdim=True)
    centred = groups - mean
    inv_std = torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + norm.eps)
    normalised = centred * inv_std
    d_centred = d_groups - d_groups.mean(-1, keepdim=True)
    d_normalised = (d_centred - normalised * (normalised * d_centred).mean(-1, keepdim=True)) * inv_std
    shape = (1, channels) + (1,) * (x.dim() - 2)
    weight, bias = norm.weight.to(dtype).reshape(shape), norm.bias.to(dtype).reshape(shape)
    y = normalised.reshape(x.shape) * weight + bias
    dy = d_normalised.reshape(x.shape) * weight
    return y.to(x.dtype), dy.to(x.dtype)


def group_norm_by_channel(norm: nn.GroupNorm, x: Tensor, dx: Tensor) -> tuple[Tensor, Tensor]:
    """`group_norm` as per-channel affine maps, y = x a + b and dy = dx a + x k + k0, whose
    coefficients come from per-channel moments over the positions (mean and variance of x,
    mean of dx and of x dx) pooled within each group (the variance by the parallel formula:
    the channel variances' mean plus the spread of the channel means)."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    batch, channels = x.shape[:2]
    xf, dxf = x.to(dtype).reshape(batch, channels, -1), dx.to(dtype).reshape(batch, channels, -1)

    def per_group(v: Tensor) -> Tensor:
        return v.unflatten(-1, (norm.num_groups, -1))

    var_c, mean_c = torch.var_mean(xf, dim=-1, correction=0)
    mean = per_group(mean_c).mean(-1, keepdim=True)
    var = (per_group(var_c) + (per_group(mean_c) - mean).pow(2)).mean(-1, keepdim=True)
    d_mean = per_group(dxf.mean(-1)).mean(-1, keepdim=True)
    covariance = per_group((xf * dxf).mean(-1)).mean(-1, keepdim=True) - mean * d_mean
    inv_std = torch.rsqrt(var + norm.eps)
    a = inv_std * per_group(norm.weight.to(dtype))
    b = per_group(norm.bias.to(dtype)) - mean * a
    k = -a * covariance * inv_std * inv_std
    k0 = -a * d_mean - k * mean
    a, b, k, k0 = (v.reshape(batch, channels, 1) for v in (a, b, k, k0))
    y = xf * a + b
    dy = dxf * a + xf * k + k0
    return y.reshape(x.shape).to(x.dtype), dy.reshape(x.shape).to(x.dtype)


def layer_norm(norm: nn.LayerNorm, x: Tensor, dx: Tangent) -> tuple[Tensor, Tangent]:
    """LayerNorm over the last `len(norm.normalized_shape)` dims, with or without an affine
    map, in at least float32 and cast back to x's dtype; the tangent by the rule above
    (std = sqrt(var + eps), var the biased variance, as torch computes it)."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    dims = tuple(range(-len(norm.normalized_shape), 0))
    xf = x.to(dtype)
    var, mean = torch.var_mean(xf, dim=dims, correction=0, keepdim=True)
    inv_std = torch.rsqrt(var + norm.eps)
    normalised = (xf - mean) * inv_std
    d_normalised = None
    if dx is not None:
        dxf = dx.to(dtype)
        d_mean = dxf.mean(dim=dims, keepdim=True)
        projection = (normalised * dxf).mean(dim=dims, keepdim=True)
        d_normalised = (dxf - d_mean - normalised * projection) * inv_std
    y, dy = normalised, d_normalised
    if norm.weight is not None:
        weight = norm.weight.to(dtype)
        y, dy = y * weight, scale(dy, weight)
    if norm.bias is not None:
        y = y + norm.bias.to(dtype)
    return y.to(x.dtype), None if dy is None else dy.to(x.dtype)


def attention(q: Tensor, k: Tensor, v: Tensor, dq: Tangent, dk: Tangent, dv: Tangent) -> tuple[Tensor, Tangent]:
    """Softmax attention over the last two dims `(..., tokens, channels)`, with its tangent."""
    if dq is None and dk is None and dv is None:
        return F.scaled_dot_product_attention(q, k, v), None
    factor = 1 / math.sqrt(q.shape[-1])
    p = torch.softmax((q @ k.transpose(-1, -2)) * factor, dim=-1)
    out = p @ v
    d_scores = add(None if dq is None else dq @ k.transpose(-1, -2), None if dk is None else q @ dk.transpose(-1, -2))
    d_out = None if dv is None else p @ dv
    if d_scores is not None:
        d_scores = d_scores * factor
        d_p = p * (d_scores - (p * d_scores).sum(-1, keepdim=True))
        d_out = add(d_out, d_p @ v)
    return out, d_out


def fourier(features: nn.Module, t: Tensor, dt: Tangent) -> tuple[Tensor, Tangent]:
    """Fourier features `[t, sin(w t), cos(w t)]` (`FourierTimeFeatures`) and their tangent."""
    angles = t.unsqueeze(-1) * features.frequencies.to(t.dtype)
    sin, cos = torch.sin(angles), torch.cos(angles)
    y = torch.cat([t.unsqueeze(-1), sin, cos], dim=-1)
    if dt is None:
        return y, None
    w = features.frequencies.to(t.dtype) * dt.unsqueeze(-1)
    return y, torch.cat([dt.unsqueeze(-1), cos * w, -sin * w], dim=-1)
