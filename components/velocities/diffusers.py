"""The drift of a pretrained diffusers model as the velocity that closes the target."""

import attrs
from torch import Tensor

from flowmap_components.teachers.diffusers import DiffusersModel
from flowmap_core.flow_map import expand_time
from flowmap_core.protocols import InterpolantPoint, ObjectiveInput
from flowmap_core.registry import register


@register("velocity", "diffusers")
@attrs.define(frozen=True, kw_only=True)
class DiffusersVelocity(DiffusersModel):
    """b_t(x) of a pretrained diffusers model (`teacher.diffusers` explains the fields),
    under the run's interpolant, frozen: Lagrangian map distillation or consistency
    distillation from a model the user owns."""

    needs_interpolant_point: bool = attrs.field(default=False, init=False)

    def at(self, inp: ObjectiveInput, x: Tensor, t: Tensor, point: InterpolantPoint | None) -> Tensor:
        return self.drift(inp.interpolant, x).drift(x, t)

    def advance(self, inp: ObjectiveInput, x: Tensor, s: Tensor, u: Tensor) -> Tensor:
        """One Euler step of the pretrained drift."""
        return x + expand_time(u - s, x) * self.at(inp, x, s, None)
