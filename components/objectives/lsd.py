"""Lagrangian self-distillation (LSD)."""

import attrs
import torch

from flowmap_components.derivatives.forward_ad import ForwardAD
from flowmap_components.objectives.residual import mean_square
from flowmap_components.stopgrad.policies import TeacherStopGradient
from flowmap_components.velocities.model import ModelVelocity
from flowmap_core.flow_map import expand_time
from flowmap_core.protocols import Derivative, ObjectiveInput, ObjectiveOutput, StopGradient, VelocitySource
from flowmap_core.registry import register


def _not_conditional(instance: "LSD", attribute: attrs.Attribute, value: VelocitySource) -> None:
    if value.needs_interpolant_point:
        raise ValueError(
            "LSD evaluates its target at X_{s,t}(x_s), which is not an interpolant point: "
            f"the velocity {type(value).__name__} is undefined there; use velocity.model"
        )


@register("objective", "lsd")
@attrs.define(frozen=True, kw_only=True)
class LSD:
    """|d/dt X_{s,t}(x_s) - sg v_{t,t}(X_{s,t}(x_s))|^2: the Lagrangian equation of the map.

    The exact map solves d/dt X_{s,t}(x) = b_t(X_{s,t}(x)) (Prop. 2.2); the `velocity`
    source (the teacher's diagonal by default) at the map's endpoint closes the target.
    With X = x + (t - s) V, d/dt X = V + (t - s) d/dt V, and V with d/dt V come from one
    pass of the `derivative` strategy along dt = 1 (forward-mode AD by default; the
    explicit tangent pass computes the same and compiles). Stop-gradient hooks: `target_input` on X_{s,t}(x_s) before it
    enters the teacher, `target` around the velocity, `derivative` on d/dt V.
    """

    stopgrad: StopGradient = attrs.field(factory=TeacherStopGradient)
    velocity: VelocitySource = attrs.field(factory=ModelVelocity, validator=_not_conditional)
    derivative: Derivative = attrs.field(factory=ForwardAD)

    @property
    def name(self) -> str:
        return "lsd"

    def __call__(self, inp: ObjectiveInput) -> ObjectiveOutput:
        s, t = inp.s, inp.t
        xs = inp.interpolant.interpolate(inp.x0, inp.x1, s).xt
        V, dV_dt = self.derivative(inp.student, xs, s, t, dt=torch.ones_like(t))
        gap = expand_time(t - s, xs)
        X = xs + gap * V
        dX_dt = V + gap * self.stopgrad.derivative(dV_dt)
        target = self.stopgrad.target(self.velocity.at, inp, self.stopgrad.target_input(X), t, None)
        loss = mean_square(dX_dt - target)
        return ObjectiveOutput(per_example=loss, terms={self.name: loss.detach().mean()})
