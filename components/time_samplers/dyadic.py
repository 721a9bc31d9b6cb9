"""Shortcut models' step sizes: dyadic gaps with s on the matching grid."""

import attrs
import torch

from flowmap_components.time_samplers.common import assemble, diagonal_count, uniform
from flowmap_core.protocols import Draw, TimeSample
from flowmap_core.registry import register
from flowmap_core.validators import positive_integer, unit_interval


def _grid(instance: "Dyadic", attribute: attrs.Attribute, value: str) -> None:
    if value not in ("full", "half"):
        raise ValueError(f"Dyadic.start_grid must be 'full' or 'half', got {value!r}")


@register("time_sampler", "dyadic")
@attrs.define(frozen=True, kw_only=True)
class Dyadic:
    """Off the diagonal, t - s = 2d with d in {2^-levels, ..., 1/2} uniform and s on a grid
    (Frans et al. 2024: the shortcut of size 2d is learned from two of size d).

    `start_grid = 'full'` (the official code, kvfrans/shortcut-models targets_shortcut.py:
    t = randint(0, 1/dt) dt for the full step dt = 2d) puts s on the multiples of 2d in
    [0, 1 - 2d], so every jump a k-step sampler takes (k = 1/(2d)) is trained; 'half'
    puts s on the multiples of d in [0, 1 - 2d]. The default, 7 levels, is the paper's
    smallest step 1/128. `diagonal_fraction` is the flow-matching share (7/8 in the
    official code: one row in `bootstrap_every` = 8 is self-consistency).
    """

    diagonal_fraction: float = attrs.field(default=0.875, validator=unit_interval)
    levels: int = attrs.field(default=7, validator=positive_integer)
    start_grid: str = attrs.field(default="full", validator=_grid)

    def __call__(self, draw: Draw) -> TimeSample:
        n_diag = diagonal_count(draw.n, self.diagonal_fraction)
        on = draw.generator.device
        exponent = torch.randint(1, self.levels + 1, (draw.n - n_diag,), generator=draw.generator, device=on)
        d = torch.pow(2.0, -exponent.to(draw.dtype))
        spacing = 2 * d if self.start_grid == "full" else d
        slots = torch.round((1 - 2 * d) / spacing).to(torch.int64) + 1  # s in {0, spacing, ..., 1 - 2d}
        s = torch.floor(uniform(draw.n - n_diag, draw.generator, draw.dtype) * slots) * spacing
        return assemble(uniform(n_diag, draw.generator, draw.dtype), s, s + 2 * d, draw.device)
