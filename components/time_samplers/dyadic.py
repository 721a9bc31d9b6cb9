"""Shortcut models' step sizes: dyadic gaps with s on the matching grid."""

import attrs
import torch

from components.time_samplers.common import assemble, diagonal_count, uniform
from flowmap_core.protocols import Draw, TimeSample
from flowmap_core.registry import register
from flowmap_core.validators import unit_interval


def _levels(instance: "Dyadic", attribute: attrs.Attribute, value: int) -> None:
    if value < 1:
        raise ValueError(f"Dyadic.levels must be >= 1, got {value}")


@register("time_sampler", "dyadic")
@attrs.define(frozen=True, kw_only=True)
class Dyadic:
    """Off the diagonal, t - s = 2d with d in {2^-levels, ..., 1/2} uniform, s uniform on the
    multiples of d in [0, 1 - 2d] (Frans et al. 2024: the shortcut of size 2d is learned
    from two of size d, so u = s + d lies on the same grid). The default, 7 levels, is the
    paper's smallest step 1/128. `diagonal_fraction` is the flow-matching share (3/4 there).
    """

    diagonal_fraction: float = attrs.field(default=0.75, validator=unit_interval)
    levels: int = attrs.field(default=7, validator=_levels)

    def __call__(self, draw: Draw) -> TimeSample:
        n_diag = diagonal_count(draw.n, self.diagonal_fraction)
        on = draw.generator.device
        exponent = torch.randint(1, self.levels + 1, (draw.n - n_diag,), generator=draw.generator, device=on)
        d = torch.pow(2.0, -exponent.to(draw.dtype))
        slots = torch.round(1 / d).to(torch.int64) - 1  # s in {0, d, ..., 1 - 2d}: 1/d - 1 choices
        s = torch.floor(uniform(draw.n - n_diag, draw.generator, draw.dtype) * slots) * d
        return assemble(uniform(n_diag, draw.generator, draw.dtype), s, s + 2 * d, draw.device)
