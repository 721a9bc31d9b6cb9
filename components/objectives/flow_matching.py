"""The interpolant (flow-matching) loss on the diagonal s = t."""

import attrs

from flowmap_components.objectives.residual import mean_square
from flowmap_core.protocols import ObjectiveInput, ObjectiveOutput
from flowmap_core.registry import register


@register("objective", "flow_matching")
@attrs.define(frozen=True, kw_only=True)
class FlowMatching:
    """|v_{t,t}(x_t) - dx_t/dt|^2: trains the diagonal b_t = v_{t,t} (the tangent condition).

    Its minimiser is b_t(x) = E[dx_t/dt | x_t = x], the probability-flow velocity. Uses
    only t; s is ignored. No stop-gradient is involved.
    """

    @property
    def name(self) -> str:
        return "flow_matching"

    def __call__(self, inp: ObjectiveInput) -> ObjectiveOutput:
        point = inp.interpolant.interpolate(inp.x0, inp.x1, inp.t)
        loss = mean_square(inp.student.velocity(point.xt, inp.t) - point.dxt)
        return ObjectiveOutput(per_example=loss, terms={self.name: loss.detach().mean()})
