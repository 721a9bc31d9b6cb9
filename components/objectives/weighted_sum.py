"""A linear combination of objectives evaluated on the same samples."""

import math

import attrs

from flowmap_core.protocols import ChecksRun, Interpolant, Objective, ObjectiveInput, ObjectiveOutput, Teacher
from flowmap_core.registry import register


def _check_weights(instance: "WeightedSum", attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    if len(value) != len(instance.terms):
        raise ValueError(
            f"WeightedSum has {len(instance.terms)} terms but {len(value)} weights; give one weight per term"
        )
    if any(not math.isfinite(w) or w <= 0 for w in value):
        raise ValueError(f"WeightedSum weights must be positive and finite, got {value}")


def _check_terms(instance: "WeightedSum", attribute: attrs.Attribute, value: tuple[Objective, ...]) -> None:
    if not value:
        raise ValueError("WeightedSum needs at least one term")


@register("objective", "weighted_sum")
@attrs.define(frozen=True, kw_only=True)
class WeightedSum:
    """sum_i w_i L_i: any positive combination keeps the flow map as minimiser (Prop. 2.3)."""

    terms: tuple[Objective, ...] = attrs.field(converter=tuple, validator=_check_terms)
    weights: tuple[float, ...] = attrs.field(converter=tuple, validator=_check_weights)

    def check_run(self, *, interpolant: Interpolant, teacher: Teacher) -> None:
        for term in self.terms:
            if isinstance(term, ChecksRun):
                term.check_run(interpolant=interpolant, teacher=teacher)

    def __call__(self, inp: ObjectiveInput) -> ObjectiveOutput:
        per_example = 0
        terms = {}
        for weight, objective in zip(self.weights, self.terms, strict=True):
            out = objective(inp)
            per_example = per_example + weight * out.per_example
            terms.update(out.terms)
        return ObjectiveOutput(per_example=per_example, terms=terms)
