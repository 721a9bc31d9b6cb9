"""Eulerian self-distillation (ESD); with the conditional velocity, MeanFlow and continuous CT."""

import attrs
import torch

from flowmap_components.objectives.residual import mean_square
from flowmap_components.stopgrad.policies import TeacherStopGradient
from flowmap_components.velocities.model import ModelVelocity
from flowmap_core.autodiff import jvp
from flowmap_core.flow_map import expand_time
from flowmap_core.protocols import ObjectiveInput, ObjectiveOutput, StopGradient, VelocitySource
from flowmap_core.registry import register


@register("objective", "esd")
@attrs.define(frozen=True, kw_only=True)
class ESD:
    """|d/ds X_{s,t}(x_s) + grad_x X_{s,t}(x_s) . sg v_s(x_s)|^2: the Eulerian equation.

    The exact map is constant along trajectories in its first argument (Prop. 2.2). With
    X = x + (t - s) V the residual is v - V + (t - s) (d/ds V + grad_x V . v), where v is
    the `velocity` source at x_s (the teacher's v_{s,s}, or the pair's dx_s/ds). One
    forward-mode JVP of the student's V along (dx, ds) = (v, 1) gives both derivative
    terms. Stop-gradient hooks: `target` around v; when the policy `stops_transport`,
    grad_x V . v is computed by the teacher without gradient (a second JVP); `derivative`
    on the whole (d/ds V + grad_x V . v) term.
    """

    stopgrad: StopGradient = attrs.field(factory=TeacherStopGradient)
    velocity: VelocitySource = attrs.field(factory=ModelVelocity)

    @property
    def name(self) -> str:
        return "esd"

    def __call__(self, inp: ObjectiveInput) -> ObjectiveOutput:
        s, t = inp.s, inp.t
        point = inp.interpolant.interpolate(inp.x0, inp.x1, s)
        xs = point.xt
        v = self.stopgrad.target(self.velocity.at, inp, xs, s, point)
        ones = torch.ones_like(s)
        if self.stopgrad.stops_transport:
            V, dV_ds = jvp(lambda sigma: inp.student.mean_velocity(xs, sigma, t), (s,), (ones,))
            with torch.no_grad():
                _, transport = jvp(lambda x: inp.teacher.mean_velocity(x, s, t), (xs,), (v,))
            along_flow = dV_ds + transport
        else:
            V, along_flow = jvp(lambda x, sigma: inp.student.mean_velocity(x, sigma, t), (xs, s), (v, ones))
        residual = v - V + expand_time(t - s, xs) * self.stopgrad.derivative(along_flow)
        loss = mean_square(residual)
        return ObjectiveOutput(per_example=loss, terms={self.name: loss.detach().mean()})
