"""Learning-rate schedules: a multiplier of the optimiser's lr at each step, with warmup."""

import math

import attrs

from flowmap_core.registry import register
from flowmap_core.validators import non_negative_integer, unit_interval


def _warmup(step: int, warmup_steps: int) -> float:
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0


@register("lr_schedule", "constant")
@attrs.define(frozen=True, kw_only=True)
class Constant:
    """lr, after a linear warmup over `warmup_steps`."""

    warmup_steps: int = attrs.field(default=0, validator=non_negative_integer)

    def __call__(self, step: int, total_steps: int) -> float:
        return _warmup(step, self.warmup_steps)


@register("lr_schedule", "cosine")
@attrs.define(frozen=True, kw_only=True)
class Cosine:
    """Half a cosine from lr down to `final_fraction` * lr at the last step, after warmup."""

    warmup_steps: int = attrs.field(default=0, validator=non_negative_integer)
    final_fraction: float = attrs.field(default=0.0, validator=unit_interval)

    def __call__(self, step: int, total_steps: int) -> float:
        span = max(total_steps - self.warmup_steps, 1)
        progress = min(max(step - self.warmup_steps, 0) / span, 1.0)
        decay = self.final_fraction + (1 - self.final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))
        return _warmup(step, self.warmup_steps) * decay


@register("lr_schedule", "inverse_sqrt")
@attrs.define(frozen=True, kw_only=True)
class InverseSqrt:
    """lr / sqrt(max(step / decay_steps, 1)), the official code's decay (after warmup)."""

    decay_steps: int = attrs.field(default=50_000, validator=non_negative_integer)
    warmup_steps: int = attrs.field(default=0, validator=non_negative_integer)

    def __call__(self, step: int, total_steps: int) -> float:
        return _warmup(step, self.warmup_steps) / math.sqrt(max(step / max(self.decay_steps, 1), 1.0))
