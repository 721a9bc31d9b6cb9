"""Eulerian self-distillation (ESD)."""

import attrs
import torch

from components.objectives.residual import mean_square
from components.stopgrad.policies import TeacherStopGradient
from flowmap_core.autodiff import jvp
from flowmap_core.protocols import ObjectiveInput, ObjectiveOutput, StopGradient
from flowmap_core.registry import register


@register("objective", "esd")
@attrs.define(frozen=True, kw_only=True)
class ESD:
    """|d/ds X_{s,t}(x_s) + grad_x X_{s,t}(x_s) . sg v_{s,s}(x_s)|^2: the Eulerian equation.

    The exact map is constant along trajectories in its first argument (Prop. 2.2). The
    teacher's velocity at x_s gives the transport direction. Stop-gradient hooks:
    `target` around v_{s,s}(x_s); when the policy `stops_transport`, the transport term
    grad_x X . v is computed by the teacher without gradient (two JVPs), otherwise both
    terms come from one JVP of the student along (ds, dx) = (1, v).
    """

    stopgrad: StopGradient = attrs.field(factory=TeacherStopGradient)

    @property
    def name(self) -> str:
        return "esd"

    def __call__(self, inp: ObjectiveInput) -> ObjectiveOutput:
        xs = inp.interpolant.interpolate(inp.x0, inp.x1, inp.s).xt
        b = self.stopgrad.target(inp.teacher.velocity, xs, inp.s)
        ones = torch.ones_like(inp.s)
        if self.stopgrad.stops_transport:
            _, dX_ds = jvp(lambda s: inp.student(xs, s, inp.t), (inp.s,), (ones,))
            with torch.no_grad():
                _, transport = jvp(lambda x: inp.teacher(x, inp.s, inp.t), (xs,), (b,))
            residual = dX_ds + transport
        else:
            _, residual = jvp(lambda x, s: inp.student(x, s, inp.t), (xs, inp.s), (b, ones))
        loss = mean_square(residual)
        return ObjectiveOutput(per_example=loss, terms={self.name: loss.detach().mean()})
