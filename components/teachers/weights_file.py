"""A flowmap backbone's weights from a safetensors file as the teacher."""

from collections.abc import Callable, Mapping
from pathlib import Path

import attrs
from safetensors.torch import load_file
from torch import nn

from flowmap_components.teachers.pretrained import placed_like
from flowmap_core import checkpoint as ckpt
from flowmap_core.flow_map import FlowMap
from flowmap_core.protocols import FlowMapLike, Parameterisation
from flowmap_core.registry import register


@register("teacher", "weights_file")
@attrs.define(frozen=True, kw_only=True)
class WeightsFile:
    """The frozen map of `backbone` (a factory, `@backbone.unet`, built for the run's data
    shape) with the weights in the safetensors file `path`, read through `parameterisation`
    (default: the run's). For weights you exported or trained elsewhere; a finished flowmap
    run is `teacher.pretrained`."""

    path: str
    backbone: Callable[..., nn.Module]
    parameterisation: Parameterisation | None = None
    _flows: dict = attrs.field(init=False, factory=dict, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if not Path(self.path).is_file():
            raise ValueError(f"teacher.weights_file.path: no file at {self.path}")

    def flow_map(self, student: FlowMapLike, ema: Mapping[float, nn.Module]) -> FlowMapLike:
        assert isinstance(student, FlowMap)
        parameterisation = self.parameterisation or student.parameterisation
        flow = self._flows.get(id(parameterisation))
        if flow is None:
            shape = getattr(student.net, "_orig_mod", student.net).data_shape
            net = self.backbone(data_shape=shape, heads=parameterisation.heads)
            try:
                ckpt.load_weights(net, load_file(self.path), f"teacher.weights_file {self.path}")
            except (ckpt.CheckpointError, ValueError) as error:
                raise ValueError(str(error)) from None
            frozen = net.eval().requires_grad_(False)
            flow = self._flows[id(parameterisation)] = FlowMap(net=frozen, parameterisation=parameterisation)
        like = next(student.net.parameters())
        return placed_like(flow, like)
