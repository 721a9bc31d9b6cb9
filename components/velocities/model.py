"""The teacher network's own velocity: self-distillation (or distillation of a pretrained one)."""

import attrs
from torch import Tensor

from flowmap_core.flow_map import expand_time
from flowmap_core.protocols import InterpolantPoint, ObjectiveInput
from flowmap_core.registry import register


@register("velocity", "model")
@attrs.define(frozen=True, kw_only=True)
class ModelVelocity:
    """v_{t,t}(x) of the teacher: the map's own diagonal (the paper's self-distillation), or a
    frozen pretrained velocity when the teacher is `teacher.pretrained` (distillation)."""

    needs_interpolant_point: bool = attrs.field(default=False, init=False)

    def at(self, inp: ObjectiveInput, x: Tensor, t: Tensor, point: InterpolantPoint | None) -> Tensor:
        return inp.teacher.velocity(x, t)

    def advance(self, inp: ObjectiveInput, x: Tensor, s: Tensor, u: Tensor) -> Tensor:
        """One Euler step of the teacher's velocity: x + (u - s) v_{s,s}(x) (consistency distillation)."""
        return x + expand_time(u - s, x) * inp.teacher.velocity(x, s)
