"""Times from a logit-normal distribution, as in SD3 and MeanFlow."""

import attrs
import torch
from torch import Tensor

from flowmap_components.time_samplers.common import assemble, diagonal_count
from flowmap_core.protocols import Draw, TimeSample
from flowmap_core.registry import register
from flowmap_core.validators import finite, positive, unit_interval


@register("time_sampler", "logit_normal")
@attrs.define(frozen=True, kw_only=True)
class LogitNormal:
    """Times sigmoid(N(mean, std^2)): the diagonal share gets one each; other rows get two, sorted s < t.

    `mean > 0` puts more times near the data (t = 1), `mean < 0` near the noise.
    """

    diagonal_fraction: float = attrs.field(default=0.5, validator=unit_interval)
    mean: float = attrs.field(default=0.0, validator=finite)
    std: float = attrs.field(default=1.0, validator=positive)

    def _draw(self, shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype) -> Tensor:
        z = torch.randn(shape, generator=generator, device=generator.device, dtype=dtype)
        return torch.sigmoid(self.mean + self.std * z)

    def __call__(self, draw: Draw) -> TimeSample:
        n_diag = diagonal_count(draw.n, self.diagonal_fraction)
        pairs = self._draw((draw.n - n_diag, 2), draw.generator, draw.dtype).sort(dim=1).values
        diagonal = self._draw((n_diag,), draw.generator, draw.dtype)
        return assemble(diagonal, pairs[:, 0], pairs[:, 1], draw.device)
