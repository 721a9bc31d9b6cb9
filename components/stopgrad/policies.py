"""Stop-gradient policies: where the implicit teacher of self-distillation is frozen.

Each objective documents where it calls the hooks; in short:

| policy  | target (teacher output) | target_input (student value fed to teacher) | ESD transport term |
|---------|-------------------------|---------------------------------------------|--------------------|
| none    | differentiated          | differentiated                              | differentiated     |
| teacher | stopped (no_grad)       | stopped                                     | differentiated     |
| full    | stopped (no_grad)       | stopped                                     | stopped            |

`teacher` is the paper's default: with the teacher frozen, each objective is a convex
(quadratic) function of the student's output. Whether the teacher is the online
network or its EMA is the trainer's `teacher_ema_rate`; under `none` with an EMA teacher,
gradients still flow through `target_input` but not into the EMA weights.
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

    def target(self, fn: Callable[..., Tensor], *args: Any) -> Tensor:
        return fn(*args)

    def target_input(self, x: Tensor) -> Tensor:
        return x


@register("stopgrad", "teacher")
@attrs.define(frozen=True, kw_only=True)
class TeacherStopGradient:
    """Freeze the implicit teacher (the paper's default): the loss is convex in the student."""

    stops_transport: bool = attrs.field(default=False, init=False)

    def target(self, fn: Callable[..., Tensor], *args: Any) -> Tensor:
        return _frozen(fn, *args)

    def target_input(self, x: Tensor) -> Tensor:
        return x.detach()


@register("stopgrad", "full")
@attrs.define(frozen=True, kw_only=True)
class FullStopGradient(TeacherStopGradient):
    """Freeze the teacher and ESD's transport term grad_x X . b (the official ESD 'full')."""

    stops_transport: bool = attrs.field(default=True, init=False)
