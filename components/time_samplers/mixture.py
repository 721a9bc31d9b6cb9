"""A mixture of time samplers: each draws the pairs of its share of the batch."""

import attrs
import torch

from flowmap_core.protocols import Draw, TimeSample, TimeSampler
from flowmap_core.registry import register


def _check(instance: "Mixture", attribute: attrs.Attribute, value: tuple) -> None:
    if len(instance.samplers) == 0 or len(value) != len(instance.samplers):
        raise ValueError(
            f"Mixture needs one weight per sampler; got {len(instance.samplers)} samplers and {len(value)} weights"
        )
    if any(w < 0 for w in value) or sum(value) <= 0:
        raise ValueError(f"Mixture.weights must be non-negative with a positive sum, got {value}")


@register("time_sampler", "mixture")
@attrs.define(frozen=True, kw_only=True)
class Mixture:
    """Sampler i draws round(w_i / sum(w) * n) rows (the last takes the rest); diagonal rows
    of all samplers first. E.g. half the pairs uniform on the triangle (every jump length),
    half with long jumps favoured (better one-step maps)."""

    samplers: tuple[TimeSampler, ...] = attrs.field(converter=tuple)
    weights: tuple[float, ...] = attrs.field(converter=tuple, validator=_check)

    def __call__(self, draw: Draw) -> TimeSample:
        total = sum(self.weights)
        counts = [int(round(draw.n * w / total)) for w in self.weights[:-1]]
        counts.append(draw.n - sum(counts))
        parts = [sampler(attrs.evolve(draw, n=k)) for sampler, k in zip(self.samplers, counts, strict=True) if k]
        diagonal = [(p.s[: p.n_diagonal], p.t[: p.n_diagonal]) for p in parts]
        off = [(p.s[p.n_diagonal :], p.t[p.n_diagonal :]) for p in parts]
        s = torch.cat([d[0] for d in diagonal] + [o[0] for o in off])
        t = torch.cat([d[1] for d in diagonal] + [o[1] for o in off])
        return TimeSample(s=s, t=t, n_diagonal=sum(p.n_diagonal for p in parts))
