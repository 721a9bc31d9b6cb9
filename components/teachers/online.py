"""The online network as its own teacher (the paper's choice, with a stop-gradient)."""

from collections.abc import Mapping

import attrs
from torch import nn

from flowmap_core.protocols import FlowMapLike
from flowmap_core.registry import register


@register("teacher", "online")
@attrs.define(frozen=True, kw_only=True)
class Online:
    """Targets from the current weights: the student is its own teacher."""

    def flow_map(self, student: FlowMapLike, ema: Mapping[float, nn.Module]) -> FlowMapLike:
        return student
