"""The paper's loss: flow matching on the diagonal rows, self-distillation on the others."""

import attrs
import torch

from flowmap_components.objectives.flow_matching import FlowMatching
from flowmap_core.protocols import ChecksRun, Interpolant, Objective, ObjectiveInput, ObjectiveOutput, Teacher
from flowmap_core.registry import register


@register("objective", "split")
@attrs.define(frozen=True, kw_only=True)
class Split:
    """L_b on rows with s = t plus L_D on rows with s != t (the time sampler sets the split).

    The first `n_diagonal` rows of a batch go to `diagonal` (by default flow matching,
    which trains b_t = v_{t,t}), the rest to `off_diagonal` (LSD, ESD, PSD, ...). The
    per-example losses are concatenated in row order, so the weighting sees every row.
    """

    off_diagonal: Objective
    diagonal: Objective = attrs.field(factory=FlowMatching)

    def check_run(self, *, interpolant: Interpolant, teacher: Teacher) -> None:
        for part in (self.diagonal, self.off_diagonal):
            if isinstance(part, ChecksRun):
                part.check_run(interpolant=interpolant, teacher=teacher)

    def __call__(self, inp: ObjectiveInput) -> ObjectiveOutput:
        n = inp.n_diagonal
        parts, terms = [], {}
        for objective, index in ((self.diagonal, slice(0, n)), (self.off_diagonal, slice(n, None))):
            rows = inp.rows(index)
            if len(rows) == 0:
                continue
            out = objective(rows)
            parts.append(out.per_example)
            terms.update(out.terms)
        return ObjectiveOutput(per_example=torch.cat(parts), terms=terms)
