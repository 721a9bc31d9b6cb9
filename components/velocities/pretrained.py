"""The velocity of a frozen pretrained model: Lagrangian map distillation, consistency distillation."""

import attrs
from torch import Tensor

from flowmap_components.teachers.pretrained import load_finished_run, placed_like
from flowmap_core.flow_map import FlowMap, expand_time
from flowmap_core.protocols import InterpolantPoint, ObjectiveInput
from flowmap_core.registry import register


@register("velocity", "pretrained")
@attrs.define(frozen=True, kw_only=True)
class PretrainedVelocity:
    """b_t(x) = v_{t,t}(x) of the finished run in `run_dir` (a flow-matching model), frozen.

    Loaded when the config is built; with `config`, a missing or unfinished run is
    trained first (stage one of a two-stage method). Under `stopgrad.none`, gradients
    still flow through its input (LMD's X_{s,t}(x_s)) but not into its weights.
    """

    run_dir: str
    config: str | None = None
    weights: str | None = None
    needs_interpolant_point: bool = attrs.field(default=False, init=False)
    _flow: FlowMap = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_flow", load_finished_run(self.run_dir, self.config, self.weights))

    def at(self, inp: ObjectiveInput, x: Tensor, t: Tensor, point: InterpolantPoint | None) -> Tensor:
        return placed_like(self._flow, x).velocity(x, t)

    def advance(self, inp: ObjectiveInput, x: Tensor, s: Tensor, u: Tensor) -> Tensor:
        """One Euler step of the pretrained velocity (consistency distillation)."""
        return x + expand_time(u - s, x) * self.at(inp, x, s, None)
