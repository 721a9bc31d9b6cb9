"""A pretrained diffusers model as the teacher: distillation from a model the user owns."""

from collections.abc import Mapping
from pathlib import Path

import attrs
import torch
from torch import nn

from flowmap_components.parameterisations.euler import Euler
from flowmap_components.teachers import diffusers_drift
from flowmap_components.teachers.diffusers_drift import DiffusersDrift
from flowmap_core.flow_map import FlowMap
from flowmap_core.protocols import FlowMapLike, Interpolant, Teacher
from flowmap_core.registry import register


@attrs.define(frozen=True, kw_only=True)
class DiffusersModel:
    """A diffusers model folder read as our drift (`diffusers_drift`), loaded when the config is built.

    `path` is the model folder (or a pipeline folder with `subfolder`, e.g. 'unet' or
    'transformer'). `prediction` ('epsilon', 'sample', 'v_prediction', 'flow') and
    `schedule` ('ddpm', 'edm', 'rectified_flow') default to what the scheduler config next
    to the model says (`scheduler` points to another one). `model_class` = 'module:Class'
    loads a ModelMixin of your own. Nothing is downloaded.
    """

    path: str
    subfolder: str | None = None
    prediction: str | None = None
    schedule: str | None = None
    scheduler: str | None = None
    model_class: str | None = None
    _model: nn.Module = attrs.field(init=False, repr=False, eq=False)
    _settings: tuple = attrs.field(init=False, repr=False, eq=False)
    _drifts: dict = attrs.field(init=False, repr=False, eq=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        folder = Path(self.path) / self.subfolder if self.subfolder else Path(self.path)
        model = diffusers_drift.load_model(folder, self.model_class)
        config = diffusers_drift.scheduler_config(folder, self.scheduler)
        schedule = diffusers_drift.make_schedule(self.schedule, config)
        prediction = diffusers_drift.check_prediction(self.prediction, config, schedule)
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_settings", (schedule, prediction))

    def drift(self, interpolant: Interpolant, like: torch.Tensor) -> DiffusersDrift:
        """The model as b_s(x) under `interpolant`, on `like`'s device and dtype (built once)."""
        drift = self._drifts.get(interpolant)
        if drift is None:
            drift = self._drifts[interpolant] = DiffusersDrift(self._model, *self._settings, interpolant)
        parameter = next(self._model.parameters(), None)
        if parameter is not None and (parameter.device != like.device or parameter.dtype != like.dtype):
            with diffusers_drift.quiet(diffusers_drift.diffusers_module()):
                self._model.to(device=like.device, dtype=like.dtype)
        return drift


@register("teacher", "diffusers")
@attrs.define(frozen=True, kw_only=True)
class DiffusersTeacher(DiffusersModel):
    """The Euler map of a pretrained diffusers model, X_{s,t}(x) = x + (t - s) b_s(x): its
    diagonal is the model's drift, so `velocity.model` (LSD's default) distils from it.
    The run's interpolant says how our time maps to the model's noise levels."""

    _interpolant: list = attrs.field(init=False, repr=False, eq=False, factory=list)

    def check_run(self, *, interpolant: Interpolant, teacher: Teacher) -> None:
        self._interpolant[:] = [interpolant]

    def flow_map(self, student: FlowMapLike, ema: Mapping[float, nn.Module]) -> FlowMapLike:
        if not self._interpolant:
            raise ValueError("teacher.diffusers needs the run's interpolant: build it through train (TrainSpec)")
        assert isinstance(student, FlowMap)
        like = next(student.net.parameters())
        return FlowMap(net=self.drift(self._interpolant[0], like), parameterisation=Euler())
