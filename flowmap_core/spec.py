"""What a run is: `TrainSpec` (gin name `train`), the components and settings of one run, and
the checks that reject a bad binding with a message that names it and says what is allowed."""

from collections.abc import Callable
from typing import Any

import attrs
import gin
import torch
from torch import nn

from flowmap_core import distributed, validators
from flowmap_core.errors import TrainingError
from flowmap_core.protocols import (
    ChecksRun,
    Conditioning,
    Coupling,
    Dataset,
    Interpolant,
    Logger,
    LRSchedule,
    Objective,
    Parameterisation,
    StreamingDataset,
    Teacher,
    TimeSampler,
    WarmStart,
    Weighting,
)
from flowmap_core.rollback import RollbackSpec

DTYPES = {"float32": torch.float32, "float64": torch.float64}
PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}
"""Autocast dtype of the loss computation (weights and optimiser stay in `train.dtype`)."""
COMPILE_MODES = ("none", "backbone", "step")
"""`train.compile`: nothing; the backbone's forward (`torch.compile(net)`); or the whole loss,
objective with its derivatives and weighting, with `fullgraph=True`, so that its backward
pass is compiled too (the optimiser step stays eager)."""


def _not_required(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is gin.REQUIRED:
        raise TrainingError(f"train.{attribute.name} is required: bind it in a gin file or with --gin")


def _rejects(check: Callable[[Any, attrs.Attribute, Any], None]) -> Callable[[Any, attrs.Attribute, Any], None]:
    """A shared validator (flowmap_core.validators) whose ValueError/TypeError is a TrainingError,
    skipped for a missing binding (reported by `_not_required`); it keeps the validator's range."""

    def validate(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is gin.REQUIRED:
            return
        try:
            check(instance, attribute, value)
        except (ValueError, TypeError) as error:
            raise TrainingError(str(error)) from None

    validate.declared_range = validators.declared_range(check)
    return validate


_positive = _rejects(validators.positive_integer)
_integer = _rejects(validators.integer)
_boolean = _rejects(validators.boolean)
_instance = _rejects(validators.component)
_grad_clip = _rejects(validators.optional(validators.positive_finite))


def _factory(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """`backbone` and `optimizer` are called by the trainer: a class or function, not an instance."""
    if value is not gin.REQUIRED and (not callable(value) or isinstance(value, nn.Module)):
        raise TrainingError(
            f"train.{attribute.name} must be a factory the trainer calls, e.g. @{attribute.name}.<name> without "
            f"parentheses; got {value!r}"
        )
    family = getattr(value, "registry_family", None)
    if family is not None and family != attribute.name:
        raise TrainingError(
            f"train.{attribute.name} must be a {attribute.name} (@{attribute.name}.<name>), got "
            f"@{family}.{value.registry_name}: a {family}"
        )


def _rollback(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not isinstance(value, RollbackSpec):
        raise TrainingError(f"train.rollback must be @rollback() or None, got {value!r}")


def _ema_rates(instance: Any, attribute: attrs.Attribute, value: tuple) -> None:
    for rate in value:
        try:
            validators.open_unit_interval(instance, attribute, rate)
        except (ValueError, TypeError):
            raise TrainingError(f"train.ema_rates must be rates in (0, 1), e.g. (0.999,); got {value!r}") from None
    if len(set(value)) != len(value):
        raise TrainingError(f"train.ema_rates must be distinct, got {value!r}")


def _ema_tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def _compile_mode(value: Any) -> Any:
    """`train.compile`: True and False (the older switch) read as 'backbone' and 'none'."""
    return {True: "backbone", False: "none"}.get(value, value) if isinstance(value, bool) else value


def _device(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str):
        raise TrainingError(f"train.device must be a string ('auto', 'cpu', 'cuda', 'cuda:1', ...), got {value!r}")
    try:
        distributed.resolve_device(value)
    except distributed.DeviceError as error:
        raise TrainingError(f"train.device = {value!r}: {error}") from None


@gin.register("train")
@attrs.frozen(kw_only=True)
class TrainSpec:
    """Everything a run needs: bound in gin as `train.<field>`.

    `backbone` and `optimizer` are factories (`@backbone.mlp`, `@optimizer.adam`, no
    parentheses): the trainer builds them for the data shape and the parameters.
    `teacher` picks the network that supplies self-distillation targets (the online
    weights, the paper's choice, or an EMA). `warm_start` (default None: random weights)
    starts the student from a model the user has. `logger` (default None: metrics.jsonl
    only) also logs to an experiment tracker. `rollback` (default None: non-finite steps
    are skipped) returns to the last good state on a loss spike (`flowmap_core.rollback`).
    `coupling` (default None: independent pairs) pairs each batch's noise with its data.
    `steps` defines the run, not wall time, so a run is reproducible. For bigger machines:
    `precision = 'bfloat16'` autocasts the loss computation, `tf32` allows TensorFloat-32
    matmuls on CUDA. `compile` is one of `COMPILE_MODES`: 'backbone' wraps the backbone in
    `torch.compile`, 'step' compiles the whole loss (a derivative strategy that cannot
    compile, forward-mode AD, falls back to 'backbone' with one line saying so).
    """

    config_name = "train"

    dataset: Dataset | StreamingDataset = attrs.field(default=gin.REQUIRED, validator=[_not_required, _instance])
    backbone: Callable[..., nn.Module] = attrs.field(default=gin.REQUIRED, validator=[_not_required, _factory])
    parameterisation: Parameterisation = attrs.field(default=gin.REQUIRED, validator=[_not_required, _instance])
    interpolant: Interpolant = attrs.field(default=gin.REQUIRED, validator=[_not_required, _instance])
    objective: Objective = attrs.field(default=gin.REQUIRED, validator=[_not_required, _instance])
    time_sampler: TimeSampler = attrs.field(default=gin.REQUIRED, validator=[_not_required, _instance])
    weighting: Weighting = attrs.field(default=gin.REQUIRED, validator=[_not_required, _instance])
    optimizer: Callable[..., torch.optim.Optimizer] = attrs.field(
        default=gin.REQUIRED, validator=[_not_required, _factory]
    )
    lr_schedule: LRSchedule = attrs.field(default=gin.REQUIRED, validator=[_not_required, _instance])
    teacher: Teacher = attrs.field(default=gin.REQUIRED, validator=[_not_required, _instance])
    conditioning: Conditioning = attrs.field(default=gin.REQUIRED, validator=[_not_required, _instance])
    warm_start: WarmStart | None = attrs.field(default=None, validator=attrs.validators.optional(_instance))
    logger: Logger | None = attrs.field(default=None, validator=attrs.validators.optional(_instance))
    rollback: RollbackSpec | None = attrs.field(default=None, validator=_rollback)
    coupling: Coupling | None = attrs.field(default=None, validator=attrs.validators.optional(_instance))
    steps: int = attrs.field(default=gin.REQUIRED, validator=[_not_required, _positive])
    batch_size: int = attrs.field(default=gin.REQUIRED, validator=[_not_required, _positive])
    grad_clip: float | None = attrs.field(default=None, validator=_grad_clip)
    ema_rates: tuple[float, ...] = attrs.field(default=(0.999,), converter=_ema_tuple, validator=_ema_rates)
    ema_warmup: bool = attrs.field(default=True, validator=_boolean)
    seed: int = attrs.field(default=0, validator=_integer)
    dtype: str = "float32"
    precision: str = "float32"
    compile: str = attrs.field(default="none", converter=_compile_mode)
    tf32: bool = attrs.field(default=True, validator=_boolean)
    device: str = attrs.field(default="auto", validator=_device)
    log_every: int = attrs.field(default=100, validator=_positive)
    checkpoint_every: int = attrs.field(default=1000, validator=_positive)
    keep_checkpoints: int = attrs.field(default=3, validator=_positive)
    max_consecutive_skips: int = attrs.field(default=50, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise TrainingError(f"train.dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.precision not in PRECISIONS:
            raise TrainingError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.compile not in COMPILE_MODES:
            raise TrainingError(
                f"train.compile must be one of {', '.join(map(repr, COMPILE_MODES))}, got {self.compile!r}"
            )
        for part in (self.objective, self.teacher):
            if isinstance(part, ChecksRun):
                try:
                    part.check_run(interpolant=self.interpolant, teacher=self.teacher)
                except ValueError as error:
                    raise TrainingError(str(error)) from None
