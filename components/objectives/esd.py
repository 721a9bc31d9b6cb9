"""Eulerian self-distillation (ESD); with the conditional velocity, MeanFlow and continuous CT."""

import attrs
import torch

from flowmap_components.derivatives.forward_ad import ForwardAD
from flowmap_components.objectives.residual import mean_square
from flowmap_components.stopgrad.policies import FullStopGradient, MeanVelocityStopGradient, TeacherStopGradient
from flowmap_components.teachers.online import Online
from flowmap_components.velocities.model import ModelVelocity
from flowmap_core.flow_map import expand_time
from flowmap_core.protocols import (
    Derivative,
    Interpolant,
    ObjectiveInput,
    ObjectiveOutput,
    StopGradient,
    Teacher,
    VelocitySource,
)
from flowmap_core.registry import register

UNSTABLE_FULL = (
    "objective.esd with stopgrad.full and teacher.online diverges: with the residual e = V - V* = A e "
    "(A = -I + (t - s)(d/ds + v.grad)) the update is -B* A e (B = -I + (t - s) d/ds), whose real part on a mode "
    "exp(i(w s + k.x)) is 1 + (t - s)^2 w (w + k.v), negative once (t - s)|k.v| > 2, so high spatial frequencies "
    "grow at long jumps; use objective.esd.stopgrad = @stopgrad.teacher() (real part |A|^2 >= 0) or "
    "@stopgrad.mean_velocity() (real part 1)"
)


@register("objective", "esd")
@attrs.define(frozen=True, kw_only=True)
class ESD:
    """|d/ds X_{s,t}(x_s) + grad_x X_{s,t}(x_s) . sg v_s(x_s)|^2: the Eulerian equation.

    The exact map is constant along trajectories in its first argument (Prop. 2.2). With
    X = x + (t - s) V the residual is v - V + (t - s) (d/ds V + grad_x V . v), where v is
    the `velocity` source at x_s (the teacher's v_{s,s}, or the pair's dx_s/ds). One
    pass of the `derivative` strategy along (dx, ds) = (v, 1) gives both derivative
    terms. Stop-gradient hooks: `target` around v; when the policy `stops_transport` but
    keeps the derivative's gradient (`full`), d/ds V is the student's and grad_x V . v the
    teacher's without gradient (two passes); `derivative` on the whole
    (d/ds V + grad_x V . v) term. When the policy `stops_derivative` (`mean_velocity`,
    MeanFlow), the term is detached whole, so one pass of the student along (v, 1)
    serves, as MeanFlow's single JVP with its tangent detached.
    """

    stopgrad: StopGradient = attrs.field(factory=TeacherStopGradient)
    velocity: VelocitySource = attrs.field(factory=ModelVelocity)
    derivative: Derivative = attrs.field(factory=ForwardAD)

    @property
    def name(self) -> str:
        return "esd"

    def check_run(self, *, interpolant: Interpolant, teacher: Teacher) -> None:
        """Refuse `stopgrad.full` with the online teacher: it diverges (see `UNSTABLE_FULL`)."""
        full = isinstance(self.stopgrad, FullStopGradient) and not isinstance(self.stopgrad, MeanVelocityStopGradient)
        if full and isinstance(teacher, Online):
            raise ValueError(UNSTABLE_FULL)

    def __call__(self, inp: ObjectiveInput) -> ObjectiveOutput:
        s, t = inp.s, inp.t
        point = inp.interpolant.interpolate(inp.x0, inp.x1, s)
        xs = point.xt
        v = self.stopgrad.target(self.velocity.at, inp, xs, s, point)
        ones = torch.ones_like(s)
        if self.stopgrad.stops_transport and not self.stopgrad.stops_derivative:
            V, dV_ds = self.derivative(inp.student, xs, s, t, ds=ones)
            with torch.no_grad():
                _, transport = self.derivative(inp.teacher, xs, s, t, dx=v)
            along_flow = dV_ds + transport
        else:
            V, along_flow = self.derivative(inp.student, xs, s, t, dx=v, ds=ones)
        residual = v - V + expand_time(t - s, xs) * self.stopgrad.derivative(along_flow)
        loss = mean_square(residual)
        return ObjectiveOutput(per_example=loss, terms={self.name: loss.detach().mean()})
