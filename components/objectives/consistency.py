"""Discrete-time consistency: the map from s must agree with the map from the next level u."""

import math

import attrs
import torch

from flowmap_components.interpolants.noise_level import noise_level
from flowmap_components.objectives.residual import mean_square
from flowmap_components.stopgrad.policies import TeacherStopGradient
from flowmap_components.velocities.conditional import ConditionalVelocity
from flowmap_core.flow_map import expand_time
from flowmap_core.protocols import ObjectiveInput, ObjectiveOutput, StopGradient, VelocitySource
from flowmap_core.registry import register
from flowmap_core.validators import positive


def _distance(instance: "Consistency", attribute: attrs.Attribute, value: str) -> None:
    if value not in ("squared", "pseudo_huber"):
        raise ValueError(f"Consistency.distance must be 'squared' or 'pseudo_huber', got {value!r}")


@register("objective", "consistency")
@attrs.define(frozen=True, kw_only=True)
class Consistency:
    """lambda(s, u) d(X_{s,t}(x_s), sg X_{u,t}(y_u)) for adjacent times s < u (the sampler's `u`).

    y_u is x_s carried to u by the `velocity` source: along the pair (consistency
    training, the conditional velocity: y_u = x_u) or by one Euler step of the teacher's
    velocity (consistency distillation). The teacher map (the trainer's `teacher`) gives
    the target. Stop-gradient hook: `target` around the teacher's X_{u,t}(y_u).

    The distance d and weight lambda:
    - `distance = 'squared'`: the mean square over dimensions (Song et al. 2023, Eq. 10
      with d = squared L2). With `normalise`, the residual is first divided by (u - s):
      as u -> s it tends to the Eulerian residual of ESD, so the loss keeps one scale
      whatever the discretisation.
    - `distance = 'pseudo_huber'`: sqrt(|r|^2 + c^2) - c with |r| summed over the D
      dimensions and c = `pseudo_huber_c` sqrt(D) (Song & Dhariwal 2023, iCT:
      c = 0.00054 sqrt(d)).
    - `sigma_weight`: lambda = 1 / (sigma_s - sigma_u) (iCT's 1 / (sigma_{i+1} - sigma_i)),
      with the interpolant's noise levels sigma = alpha / beta of x_s / beta(s) = x1 + sigma x0
      (`components.interpolants.noise_level`); under the linear interpolant
      lambda = s u / (u - s).
    """

    velocity: VelocitySource = attrs.field(factory=ConditionalVelocity)
    stopgrad: StopGradient = attrs.field(factory=TeacherStopGradient)
    normalise: bool = True
    distance: str = attrs.field(default="squared", validator=_distance)
    pseudo_huber_c: float = attrs.field(default=0.00054, validator=positive)
    sigma_weight: bool = False

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
        if self.distance == "squared":
            loss = mean_square(residual)
        else:
            c = self.pseudo_huber_c * math.sqrt(residual[0].numel())
            loss = torch.sqrt(residual.pow(2).flatten(1).sum(1) + c * c) - c
        if self.sigma_weight:
            loss = loss / (noise_level(inp.interpolant, s) - noise_level(inp.interpolant, u))
        return ObjectiveOutput(per_example=loss, terms={self.name: loss.detach().mean()})
