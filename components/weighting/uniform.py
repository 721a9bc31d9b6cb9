"""The plain mean of the per-example losses."""

import attrs

from flowmap_core.registry import register
from flowmap_core.typing import Scalar, Times, typechecked


@register("weighting", "uniform")
@attrs.define(frozen=True, kw_only=True)
class Uniform:
    """mean_i l_i: every example counts the same."""

    @typechecked
    def __call__(self, per_example: Times, s: Times, t: Times) -> Scalar:
        return per_example.mean()
