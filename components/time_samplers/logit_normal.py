"""Times from a logit-normal distribution, as in SD3 and MeanFlow."""

import attrs
import torch
from torch import Tensor

from components.time_samplers.common import assemble, check_fraction, diagonal_count
from flowmap_core.protocols import TimeSample
from flowmap_core.registry import register


def _positive(instance: "LogitNormal", attribute: attrs.Attribute, value: float) -> None:
    if value <= 0:
        raise ValueError(f"LogitNormal.{attribute.name} must be positive, got {value}")


@register("time_sampler", "logit_normal")
@attrs.define(frozen=True, kw_only=True)
class LogitNormal:
    """Times sigmoid(N(mean, std^2)): the diagonal share gets one each; other rows get two, sorted s < t.

    `mean > 0` puts more times near the data (t = 1), `mean < 0` near the noise.
    """

    diagonal_fraction: float = attrs.field(default=0.5, validator=check_fraction)
    mean: float = 0.0
    std: float = attrs.field(default=1.0, validator=_positive)

    def _draw(self, shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype) -> Tensor:
        z = torch.randn(shape, generator=generator, device=generator.device, dtype=dtype)
        return torch.sigmoid(self.mean + self.std * z)

    def __call__(
        self,
        n: int,
        *,
        step: int,
        total_steps: int,
        generator: torch.Generator,
        device: torch.device,
        dtype: torch.dtype,
    ) -> TimeSample:
        n_diag = diagonal_count(n, self.diagonal_fraction)
        pairs = self._draw((n - n_diag, 2), generator, dtype).sort(dim=1).values
        return assemble(self._draw((n_diag,), generator, dtype), pairs[:, 0], pairs[:, 1], device)
