"""Rolling back to the last good state on a loss spike: the sentinel that decides when.

With `train.rollback = @rollback()`, the trainer reads each step's loss on the host (one
synchronisation a step) and hands it to a `Sentinel`. A non-finite loss, or a loss above
`spike_factor` times the running median of the last `window` healthy losses for
`spike_steps` steps in a row, restores the state kept at the last healthy checkpoint step
(weights, EMA, optimiser, generators), multiplies the learning rate by `lr_factor`, reseeds
the data so the batches before the spike are not replayed, logs the event, and trains on;
more than `max_rollbacks` stop the run.
"""

import math
import statistics
from collections import deque

import attrs
import gin

from flowmap_core import validators

ROLLBACK_RESEED = 7_919
"""Added to the data seed per rollback: the run does not replay the batches before the spike."""


@gin.register("rollback")
@attrs.frozen(kw_only=True)
class RollbackSpec:
    """When the trainer rolls back, and what it changes then (module docstring). `lr_factor` is
    in (0, 1]: 1 keeps the learning rate."""

    config_name = "rollback"

    spike_factor: float = attrs.field(default=10.0, validator=validators.positive_finite)
    spike_steps: int = attrs.field(default=20, validator=validators.positive_integer)
    window: int = attrs.field(default=200, validator=validators.positive_integer)
    lr_factor: float = attrs.field(default=1.0, validator=validators.in_range(0.0, 1.0, low_open=True))
    max_rollbacks: int = attrs.field(default=5, validator=validators.positive_integer)


@attrs.define
class Sentinel:
    """Watches the loss step by step: `watch(loss)` says why to roll back now, or None."""

    spec: RollbackSpec
    history: deque = attrs.field(init=False)
    above: int = 0
    rollbacks: int = 0

    def __attrs_post_init__(self) -> None:
        self.history = deque(maxlen=self.spec.window)

    @property
    def healthy(self) -> bool:
        """No spike under way: a state kept now is a good one to return to."""
        return self.above == 0

    def watch(self, loss: float) -> str | None:
        if not math.isfinite(loss):
            return f"the loss is {loss}"
        enough = len(self.history) >= min(self.spec.window, 2 * self.spec.spike_steps)
        median = statistics.median(self.history) if enough else math.inf
        if loss > self.spec.spike_factor * median:
            self.above += 1
            if self.above >= self.spec.spike_steps:
                return (
                    f"the loss stayed above {self.spec.spike_factor:g} x its running median ({median:.4g}) "
                    f"for {self.spec.spike_steps} steps"
                )
            return None
        self.above = 0
        self.history.append(loss)
        return None

    def rolled_back(self) -> None:
        """Count a rollback and forget the spike."""
        self.rollbacks += 1
        self.above = 0
