"""Discrete-time consistency: the map from s must agree with the map from the next level u."""

import attrs

from components.objectives.residual import mean_square
from components.stopgrad.policies import TeacherStopGradient
from components.velocities.conditional import ConditionalVelocity
from flowmap_core.flow_map import expand_time
from flowmap_core.protocols import ObjectiveInput, ObjectiveOutput, StopGradient, VelocitySource
from flowmap_core.registry import register


@register("objective", "consistency")
@attrs.define(frozen=True, kw_only=True)
class Consistency:
    """|X_{s,t}(x_s) - sg X_{u,t}(y_u)|^2 for adjacent times s < u (the sampler's `u`).

    y_u is x_s carried to u by the `velocity` source: along the pair (consistency
    training, the conditional velocity: y_u = x_u) or by one Euler step of the teacher's
    velocity (consistency distillation). The teacher map (the trainer's `teacher`,
    an EMA in Song et al. 2023) gives the target. With `normalise`, the residual is
    divided by (u - s): as u -> s it tends to the Eulerian residual of ESD, so the loss
    keeps one scale whatever the discretisation; without it, it is the published
    squared-L2 consistency loss (mean over dimensions). Stop-gradient hook: `target`
    around the teacher's X_{u,t}(y_u).
    """

    velocity: VelocitySource = attrs.field(factory=ConditionalVelocity)
    stopgrad: StopGradient = attrs.field(factory=TeacherStopGradient)
    normalise: bool = True

    @property
    def name(self) -> str:
        return "consistency"

    def __call__(self, inp: ObjectiveInput) -> ObjectiveOutput:
        if inp.u is None:
            raise ValueError("objective.consistency needs the time sampler's next level u (time_sampler.consistency)")
        s, u, t = inp.s, inp.u, inp.t
        xs = inp.interpolant.interpolate(inp.x0, inp.x1, s).xt
        target = self.stopgrad.target(lambda: inp.teacher(self.velocity.advance(inp, xs, s, u), u, t))
        residual = inp.student(xs, s, t) - target
        if self.normalise:
            residual = residual / expand_time(u - s, xs)
        loss = mean_square(residual)
        return ObjectiveOutput(per_example=loss, terms={self.name: loss.detach().mean()})
