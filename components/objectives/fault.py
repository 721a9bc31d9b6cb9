"""Faults injected into another objective, once each: a drill for `train.rollback`."""

import attrs
import torch

from flowmap_core.protocols import Objective, ObjectiveInput, ObjectiveOutput
from flowmap_core.registry import register
from flowmap_core.validators import non_negative_integer, optional, positive_finite, positive_integer


@register("objective", "fault")
@attrs.define(frozen=True, kw_only=True)
class Fault:
    """`objective`, with its loss NaN at step `nan_at` and `spike_factor` times larger for
    `spike_steps` steps from `spike_at` (None: no such fault). Each fault fires on the
    first pass only: once the run steps back (a rollback), those steps train cleanly. Eager
    only (the faults are decided in Python, by the step)."""

    objective: Objective
    nan_at: int | None = attrs.field(default=None, validator=optional(non_negative_integer))
    spike_at: int | None = attrs.field(default=None, validator=optional(non_negative_integer))
    spike_steps: int = attrs.field(default=30, validator=positive_integer)
    spike_factor: float = attrs.field(default=1000.0, validator=positive_finite)
    _state: dict = attrs.field(init=False, factory=lambda: {"last": -1, "done": set()}, eq=False, repr=False)

    def __call__(self, inp: ObjectiveInput) -> ObjectiveOutput:
        out = self.objective(inp)
        state = self._state
        if inp.step <= state["last"]:  # stepped back: the faults already met are done
            starts = {"nan": self.nan_at, "spike": self.spike_at}
            state["done"] |= {name for name, start in starts.items() if start is not None and start <= state["last"]}
        state["last"] = max(state["last"], inp.step)
        if inp.step == self.nan_at and "nan" not in state["done"]:
            return attrs.evolve(out, per_example=out.per_example * torch.nan)
        spiking = self.spike_at is not None and self.spike_at <= inp.step < self.spike_at + self.spike_steps
        if spiking and "spike" not in state["done"]:
            return attrs.evolve(out, per_example=out.per_example * self.spike_factor)
        return out
