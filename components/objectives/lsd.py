"""Lagrangian self-distillation (LSD)."""

import attrs
import torch

from components.objectives.residual import mean_square
from components.stopgrad.policies import TeacherStopGradient
from flowmap_core.autodiff import jvp
from flowmap_core.protocols import ObjectiveInput, ObjectiveOutput, StopGradient
from flowmap_core.registry import register


@register("objective", "lsd")
@attrs.define(frozen=True, kw_only=True)
class LSD:
    """|d/dt X_{s,t}(x_s) - sg v_{t,t}(X_{s,t}(x_s))|^2: the Lagrangian equation of the map.

    The exact map solves d/dt X_{s,t}(x) = b_t(X_{s,t}(x)) (Prop. 2.2); the teacher's
    velocity at the map's endpoint closes the target. d/dt X comes from one forward-mode
    JVP in t. Stop-gradient hooks: `target_input` on X_{s,t}(x_s) before it enters the
    teacher, `target` around the teacher's v_{t,t}.
    """

    stopgrad: StopGradient = attrs.field(factory=TeacherStopGradient)

    @property
    def name(self) -> str:
        return "lsd"

    def __call__(self, inp: ObjectiveInput) -> ObjectiveOutput:
        xs = inp.interpolant.interpolate(inp.x0, inp.x1, inp.s).xt
        X, dX_dt = jvp(lambda t: inp.student(xs, inp.s, t), (inp.t,), (torch.ones_like(inp.t),))
        target = self.stopgrad.target(inp.teacher.velocity, self.stopgrad.target_input(X), inp.t)
        loss = mean_square(dX_dt - target)
        return ObjectiveOutput(per_example=loss, terms={self.name: loss.detach().mean()})
