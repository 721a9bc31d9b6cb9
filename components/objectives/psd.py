"""Progressive (semigroup) self-distillation: PSD-M and PSD-U."""

import attrs
import torch
from torch import Tensor

from flowmap_components.objectives.residual import mean_square
from flowmap_components.stopgrad.policies import TeacherStopGradient
from flowmap_core.flow_map import expand_time
from flowmap_core.protocols import FlowMapLike, ObjectiveInput, ObjectiveOutput, StopGradient
from flowmap_core.registry import register
from flowmap_core.validators import open_unit_interval, optional


def two_jumps(teacher: FlowMapLike, xs: Tensor, s: Tensor, u: Tensor, t: Tensor, h: Tensor) -> Tensor:
    """Mean velocity of X_{u,t}(X_{s,u}(x)) over [s, t]: h V_{s,u}(x) + (1 - h) V_{u,t}(X_{s,u}(x))."""
    v_su = teacher.mean_velocity(xs, s, u)
    x_u = xs + expand_time(u - s, xs) * v_su
    v_ut = teacher.mean_velocity(x_u, u, t)
    h = expand_time(h, xs)
    return h * v_su + (1 - h) * v_ut


@register("objective", "psd")
@attrs.define(frozen=True, kw_only=True)
class PSD:
    """|V_{s,t}(x_s) - sg[h V_{s,u}(x_s) + (1-h) V_{u,t}(X_{s,u}(x_s))]|^2, u = s + h (t - s).

    The semigroup property X_{s,t} = X_{u,t} o X_{s,u} (Prop. 2.2), in velocity form:
    the X-space residual divided by (t - s), so every pair is on one scale. `h = 0.5` is
    PSD-M; `h = None` draws h ~ U(0, 1) per example (PSD-U). Stop-gradient hook: `target`
    around the teacher's two jumps (no student value enters the teacher).
    """

    h: float | None = attrs.field(default=0.5, validator=optional(open_unit_interval))
    stopgrad: StopGradient = attrs.field(factory=TeacherStopGradient)

    @property
    def name(self) -> str:
        return {None: "psd_u", 0.5: "psd_m"}.get(self.h, "psd")

    def __call__(self, inp: ObjectiveInput) -> ObjectiveOutput:
        s, t = inp.s, inp.t
        if self.h is None:
            h = inp.uniform()
        else:
            h = torch.full_like(s, self.h)
        u = s + h * (t - s)
        xs = inp.interpolant.interpolate(inp.x0, inp.x1, s).xt
        target = self.stopgrad.target(two_jumps, inp.teacher, xs, s, u, t, h)
        loss = mean_square(inp.student.mean_velocity(xs, s, t) - target)
        return ObjectiveOutput(per_example=loss, terms={self.name: loss.detach().mean()})
