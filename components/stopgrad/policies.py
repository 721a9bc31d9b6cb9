"""Stop-gradient policies: where the implicit teacher of self-distillation is frozen.

Objectives call the hooks at documented places; in short:

| policy        | target (teacher output) | target_input | ESD transport | derivative term |
|---------------|-------------------------|--------------|---------------|-----------------|
| none          | differentiated          | differentiated | differentiated | differentiated |
| teacher       | stopped (no_grad)       | stopped      | differentiated | differentiated |
| full          | stopped (no_grad)       | stopped      | stopped        | differentiated |
| mean_velocity | stopped (no_grad)       | stopped      | stopped        | stopped        |

`target` is the teacher's output that closes the loss; `target_input` a student value fed
to the teacher (LSD's X_{s,t}(x_s)); the transport term is ESD's grad_x V . v; the
derivative term is (t - s) times the student's time derivative of V (LSD's d/dt V,
ESD's d/ds V + grad_x V . v). `teacher` is the paper's default: with the teacher
frozen, each objective is a convex (quadratic) function of the student's output.
`mean_velocity` leaves gradient only in the student's mean velocity V_{s,t}: the
objective regresses V on a frozen target (MeanFlow's stop-gradient). Whether the
teacher is the online network or an EMA is the trainer's `teacher`; under `none` with a
frozen teacher (EMA, pretrained), gradients still flow through `target_input`.
"""

from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import Tensor

from flowmap_core.registry import register


def _frozen(fn: Callable[..., Tensor], *args: Any) -> Tensor:
    with torch.no_grad():
        return fn(*args)


@register("stopgrad", "none")
@attrs.define(frozen=True, kw_only=True)
class NoStopGradient:
    """No stop-gradient: the loss is differentiated through teacher and student alike."""

    stops_transport: bool = attrs.field(default=False, init=False)
    stops_derivative: bool = attrs.field(default=False, init=False)

    def target(self, fn: Callable[..., Tensor], *args: Any) -> Tensor:
        return fn(*args)

    def target_input(self, x: Tensor) -> Tensor:
        return x

    def derivative(self, d: Tensor) -> Tensor:
        return d


@register("stopgrad", "teacher")
@attrs.define(frozen=True, kw_only=True)
class TeacherStopGradient(NoStopGradient):
    """Freeze the implicit teacher (the paper's default): the loss is convex in the student."""

    def target(self, fn: Callable[..., Tensor], *args: Any) -> Tensor:
        return _frozen(fn, *args)

    def target_input(self, x: Tensor) -> Tensor:
        return x.detach()


@register("stopgrad", "full")
@attrs.define(frozen=True, kw_only=True)
class FullStopGradient(TeacherStopGradient):
    """Freeze the teacher and ESD's transport term grad_x V . v (the official ESD 'full')."""

    stops_transport: bool = attrs.field(default=True, init=False)


@register("stopgrad", "mean_velocity")
@attrs.define(frozen=True, kw_only=True)
class MeanVelocityStopGradient(FullStopGradient):
    """Gradient only through the student's V_{s,t}: regress it on a frozen target (MeanFlow)."""

    stops_derivative: bool = attrs.field(default=True, init=False)

    def derivative(self, d: Tensor) -> Tensor:
        return d.detach()
