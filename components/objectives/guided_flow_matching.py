"""The diagonal of a guided map: flow matching at w = 1, self-distillation of b^w for other w."""

import attrs
import torch

from flowmap_components.conditioning.class_label import NULL
from flowmap_components.objectives.residual import mean_square
from flowmap_components.stopgrad.policies import TeacherStopGradient
from flowmap_core.flow_map import expand_time
from flowmap_core.protocols import ObjectiveInput, ObjectiveOutput, StopGradient
from flowmap_core.registry import register


@register("objective", "guided_flow_matching")
@attrs.define(frozen=True, kw_only=True)
class GuidedFlowMatching:
    """|v_{t,t}(x_t; c, 1) - dx_t/dt|^2 + |v_{t,t}(x_t; c, w) - sg b^w_t(x_t)|^2,
    b^w = (1 - w) v_{t,t}(x; null, 1) + w v_{t,t}(x; c, 1).

    The first term is flow matching of the class-conditional velocity (the label is the
    null label for the dropped share, which trains b(x, null), and for rows at w = 0,
    whose label carries no class since b^0 = b(x, null) and need not be their data's:
    `conditioning.guided.edge_fraction`); the second makes the
    map's diagonal at guidance w the guided velocity of classifier-free guidance, with
    the teacher's conditional and unconditional velocities under stop-gradient. Off the
    diagonal, any self-distillation objective then trains the guided map X^w_{s,t}
    (the authors' answer to distilling guidance). Needs `conditioning.guided`.
    Stop-gradient hook: `target` around b^w.
    """

    stopgrad: StopGradient = attrs.field(factory=TeacherStopGradient)

    @property
    def name(self) -> str:
        return "guided_flow_matching"

    def __call__(self, inp: ObjectiveInput) -> ObjectiveOutput:
        cond = getattr(inp.student, "cond", {})
        if "guidance" not in cond or "label" not in cond:
            raise ValueError("objective.guided_flow_matching needs conditioning.guided (a label and a guidance scale)")
        label, w = cond["label"], cond["guidance"]
        point = inp.interpolant.interpolate(inp.x0, inp.x1, inp.t)
        one = torch.ones_like(w)
        null = torch.full_like(label, NULL)
        data_label = torch.where(w == 0, null, label)
        conditional = inp.student.with_cond(label=data_label, guidance=one).velocity(point.xt, inp.t)
        flow_matching = mean_square(conditional - point.dxt)

        def guided_velocity():
            with_class = inp.teacher.with_cond(label=label, guidance=one).velocity(point.xt, inp.t)
            without = inp.teacher.with_cond(label=null, guidance=one).velocity(point.xt, inp.t)
            weight = expand_time(w, point.xt)
            return (1 - weight) * without + weight * with_class

        target = self.stopgrad.target(guided_velocity)
        guidance = mean_square(inp.student.velocity(point.xt, inp.t) - target)
        return ObjectiveOutput(
            per_example=flow_matching + guidance,
            terms={"flow_matching": flow_matching.detach().mean(), "guidance": guidance.detach().mean()},
        )
