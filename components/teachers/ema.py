"""An exponential moving average of the weights as the teacher."""

from collections.abc import Mapping

import attrs
from torch import nn

from flowmap_core.flow_map import FlowMap
from flowmap_core.protocols import FlowMapLike
from flowmap_core.registry import register
from flowmap_core.validators import open_unit_interval


@register("teacher", "ema")
@attrs.define(frozen=True, kw_only=True)
class EMATeacher:
    """Targets from the EMA of the weights at `rate` (one of the run's `train.ema_rates`)."""

    rate: float = attrs.field(default=0.999, validator=open_unit_interval)

    def flow_map(self, student: FlowMapLike, ema: Mapping[float, nn.Module]) -> FlowMapLike:
        if self.rate not in ema:
            raise ValueError(
                f"teacher.ema.rate = {self.rate} is not one of the run's EMA rates "
                f"(train.ema_rates = {tuple(ema)}); add it there"
            )
        assert isinstance(student, FlowMap)
        return FlowMap(net=ema[self.rate], parameterisation=student.parameterisation)
