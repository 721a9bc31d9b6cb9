"""The conditioning embedding the UNet and the DiT share: times, guidance scale and label."""

import torch
from torch import Tensor, nn

from flowmap_components.backbones import tangent_rules as rules
from flowmap_components.backbones.tangent_rules import Tangent


def embed_conditions(
    net: nn.Module, s: Tensor, t: Tensor, ds: Tangent, dt: Tangent, label: Tensor | None, guidance: Tensor | None
) -> tuple[Tensor, Tangent]:
    """The embedding of (s, t, guidance, label) after SiLU, and its tangent in (ds, dt), with
    autocast off: Fourier features of s and t (`net.time_features`) and of the guidance scale
    (`net.guidance_features`, or None), concatenated, `net.embedding_in`, plus the label's
    embedding (`net.label_embedding` over `net.num_classes` classes and a null label, or
    None), then SiLU, `net.embedding_out` and SiLU."""
    name = type(net).__name__
    with torch.autocast(s.device.type, enabled=False):
        time_features = net.time_features
        values, tangents = zip(rules.fourier(time_features, s, ds), rules.fourier(time_features, t, dt), strict=True)
        values, tangents = list(values), list(tangents)
        if net.guidance_features is not None:
            if guidance is None:
                raise ValueError(f"this {name} takes a guidance scale: pass guidance (1 for plain conditioning)")
            values.append(net.guidance_features(guidance))
            tangents.append(None)
        h, dh = rules.linear(net.embedding_in, *rules.cat(values, tangents, dim=-1))
        if net.num_classes is not None:
            if label is None:
                raise ValueError(f"this {name} is class-conditional: pass label (-1 for no class)")
            h = h + net.label_embedding(torch.where(label < 0, net.num_classes, label))
        h, dh = rules.linear(net.embedding_out, *rules.silu(h, dh))
        return rules.silu(h, dh)
