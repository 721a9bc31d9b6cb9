"""One generic training loop: it knows no method, dataset or network; gin supplies them.

A run is described by a `TrainSpec` (gin name `train`): the components (dataset,
backbone, parameterisation, interpolant, objective, time sampler, weighting, optimiser,
learning-rate schedule) and the loop's settings. Each step draws a batch of data, noise
x0 and times (s, t), evaluates the objective with the online network as student and the
online network or an EMA as teacher, reduces it with the weighting, and takes one
optimiser step with gradient clipping. Steps whose loss or gradient is not finite are
skipped and counted; too many in a row stop the run with the last good checkpoint intact.

The run directory receives `config.gin` (the full config, at start),
`operative_config.gin` (what was used, after the first step), `metrics.jsonl` and
`checkpoints/` (see `flowmap_core.checkpoint`). Only rank 0 writes.
"""

import difflib
import functools
import json
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import gin
import torch
from torch import nn
from tqdm.auto import tqdm

from flowmap_core import checkpoint as ckpt
from flowmap_core import data, distributed, records, registry, validators
from flowmap_core.ema import EMA
from flowmap_core.errors import FlowmapError
from flowmap_core.flow_map import FlowMap
from flowmap_core.protocols import (
    Batch,
    Conditioning,
    Dataset,
    Draw,
    Interpolant,
    LRSchedule,
    Objective,
    ObjectiveInput,
    Parameterisation,
    SharesBatchStatistics,
    StreamingDataset,
    StreamRequest,
    Teacher,
    TimeSample,
    TimeSampler,
    Weighting,
)
from flowmap_core.step_stats import SkipCounter, StepResult, Window

DTYPES = {"float32": torch.float32, "float64": torch.float64}
PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}
"""Autocast dtype of the loss computation (weights and optimiser stay in `train.dtype`)."""
COMPILE_MODES = ("none", "backbone", "step")
"""`train.compile`: nothing; the backbone's forward (`torch.compile(net)`); or the whole loss,
objective with its derivatives and weighting, with `fullgraph=True`, so that its backward
pass is compiled too (the optimiser step stays eager)."""


class TrainingError(FlowmapError, RuntimeError):
    """The run cannot go on (bad configuration, a run directory that does not match, ...)."""


class Interrupted(RuntimeError):
    """Training was interrupted (SIGINT / SIGTERM) after a checkpoint was written."""

    def __init__(self, step: int, run_dir: Path | None):
        self.step = step
        self.run_dir = run_dir
        where = f" --run-dir {run_dir}" if run_dir else ""
        super().__init__(
            f"interrupted at step {step}; a checkpoint was written. Resume with: flowmap train --resume{where}"
        )


def _not_required(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is gin.REQUIRED:
        raise TrainingError(f"train.{attribute.name} is required: bind it in a gin file or with --gin")


def _rejects(check: Callable[[Any, attrs.Attribute, Any], None]) -> Callable[[Any, attrs.Attribute, Any], None]:
    """A shared validator (flowmap_core.validators) whose ValueError/TypeError is a TrainingError,
    skipped for a missing binding (reported by `_not_required`)."""

    def validate(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is gin.REQUIRED:
            return
        try:
            check(instance, attribute, value)
        except (ValueError, TypeError) as error:
            raise TrainingError(str(error)) from None

    return validate


_positive = _rejects(validators.positive_integer)
_integer = _rejects(validators.integer)
_boolean = _rejects(validators.boolean)
_instance = _rejects(validators.component)


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


def _grad_clip(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        _rejects(validators.positive_finite)(instance, attribute, value)


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
    weights, the paper's choice, or an EMA). `steps` defines the run, not wall time,
    so a run is reproducible. For bigger machines: `precision = 'bfloat16'` autocasts the
    loss computation, `tf32` allows TensorFloat-32 matmuls on CUDA. `compile` is one of
    `COMPILE_MODES`: 'backbone' wraps the backbone in `torch.compile`, 'step' compiles the
    whole loss (a derivative strategy that cannot compile, forward-mode AD, falls back to
    'backbone' with one line saying so).
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


@records.traceable
@attrs.frozen
class StepInput:
    """The random draws of one step: data, noise, times and the network's conditioning."""

    batch: Batch
    x0: torch.Tensor
    times: TimeSample
    cond: dict[str, torch.Tensor] = attrs.field(factory=dict)


class Trainer:
    """Runs a `TrainSpec`, optionally in a run directory, on one process or under torchrun."""

    def __init__(
        self,
        spec: TrainSpec,
        run_dir: Path | str | None = None,
        *,
        context: distributed.Context | None = None,
        resume: bool = False,
        force: bool = False,
        progress: bool = True,
    ):
        self.spec = spec
        self.context = context or distributed.Context(device=distributed.resolve_device(spec.device))
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress = progress and self.context.is_main
        self.device = self.context.device
        self.dtype = DTYPES[spec.dtype]
        if spec.batch_size % self.context.world_size:
            raise TrainingError(
                f"train.batch_size = {spec.batch_size} must divide evenly among {self.context.world_size} processes"
            )
        self.local_batch = spec.batch_size // self.context.world_size

        torch.manual_seed(spec.seed)
        try:
            options = spec.conditioning.backbone_options(spec.dataset)
        except ValueError as error:
            raise TrainingError(str(error)) from error
        self.net = spec.backbone(
            data_shape=tuple(spec.dataset.data_shape), heads=spec.parameterisation.heads, **options
        )
        self.net.to(device=self.device, dtype=self.dtype)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = spec.tf32
            torch.backends.cudnn.allow_tf32 = spec.tf32
        self.modules = nn.ModuleDict({"net": self.net})
        if isinstance(spec.weighting, nn.Module):
            self.modules["weighting"] = spec.weighting.to(device=self.device, dtype=self.dtype)
        if isinstance(spec.weighting, SharesBatchStatistics):
            spec.weighting.share_across_ranks(functools.partial(distributed.sum_over_ranks, context=self.context))
        distributed.broadcast_parameters(self.modules, self.context)
        self.parameters = [p for p in self.modules.parameters() if p.requires_grad]
        self.optimizer = spec.optimizer(self.parameters)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.ema = EMA(self.net, spec.ema_rates, warmup=spec.ema_warmup)
        self.compile = self._compile_mode()
        self.forward = torch.compile(self.net) if self.compile == "backbone" else self.net
        self.student = self.flow_map()
        try:
            self.teacher = spec.teacher.flow_map(self.student, self.ema.nets)
        except ValueError as error:
            raise TrainingError(str(error)) from error
        self._check_derivatives()
        self._objective_loss = (
            torch.compile(self._weighted_objective, fullgraph=True)
            if self.compile == "step"
            else self._weighted_objective
        )

        stream = spec.seed * 1_000_003 + self.context.rank
        self.host_generator = torch.Generator().manual_seed(stream)
        self.device_generator = torch.Generator(device=self.device).manual_seed(stream + 7919)
        self.objective_generator = torch.Generator(device=self.device).manual_seed(stream + 104_729)
        self.step = 0
        self._skips = SkipCounter(self.device)
        self._last_check = 0
        self.elapsed = 0.0
        self._stop_signal: int | None = None
        self._checked_data = False
        self._batches: Iterator[Batch] | None = None

        if self.run_dir is not None:
            self._prepare_run_dir(resume=resume, force=force)

    # ------------------------------------------------------------------ the step

    def _compile_mode(self) -> str:
        """`train.compile`, or 'backbone' (said in one line) where the objective holds a component
        that cannot be compiled whole (`compiles = False`: forward-mode AD in torch 2.13)."""
        if self.spec.compile != "step":
            return self.spec.compile
        blockers = [p for p in registry.parts(self.spec.objective) if getattr(p, "compiles", True) is False]
        if not blockers:
            return "step"
        names = sorted({f"{type(p).registry_family}.{type(p).registry_name}" for p in blockers})
        self._log(
            f"train.compile = 'step': {', '.join(names)} cannot be compiled whole in torch {torch.__version__} "
            "(AOT autograd rejects forward-mode AD); compiling the backbone only. "
            "@derivative.tangent_pass() or @derivative.finite_difference() compile whole"
        )
        return "backbone"

    def _check_derivatives(self) -> None:
        """Every derivative strategy of the objective can differentiate the student and teacher."""
        for part in registry.parts(self.spec.objective):
            unavailable = getattr(part, "unavailable", None)
            if not callable(unavailable) or not hasattr(part, "compiles"):
                continue
            for X in (self.student, self.teacher):
                why = unavailable(X) if hasattr(X, "net") else None
                if why:
                    raise TrainingError(f"{type(part).registry_family}.{type(part).registry_name}: {why}")

    def flow_map(self, net: nn.Module | None = None) -> FlowMap:
        """The flow map of `net` (default: the online network, compiled if asked) under the
        run's parameterisation."""
        return FlowMap(net=self.forward if net is None else net, parameterisation=self.spec.parameterisation)

    def draw(self) -> StepInput:
        """Data, conditioning, noise and times for the next step, from this rank's generators."""
        n = self.local_batch
        if self._batches is None:
            self._batches = data.batches(self.spec.dataset, self.stream_request(), self.host_generator)
        batch = next(self._batches)
        if not self._checked_data:
            self._check_data(batch)
        cond = self.spec.conditioning(batch, generator=self.host_generator)
        x0 = torch.randn(batch.x1.shape, generator=self.device_generator, device=self.device, dtype=self.dtype)
        times = self.spec.time_sampler(
            Draw(
                n=n,
                step=self.step,
                total_steps=self.spec.steps,
                generator=self.host_generator,
                device=torch.device("cpu"),
                dtype=self.dtype,
            )
        )
        times = attrs.evolve(
            times,
            s=data.to_device(times.s, self.device),
            t=data.to_device(times.t, self.device),
            u=data.to_device(times.u, self.device),
        )
        return StepInput(batch=batch, x0=x0, times=times, cond=cond)

    def stream_request(self) -> StreamRequest:
        """What this process asks the dataset for: its share of the batch, from the current step on."""
        return StreamRequest(
            batch_size=self.local_batch,
            seed=self.spec.seed,
            step=self.step,
            rank=self.context.rank,
            world_size=self.context.world_size,
            device=self.device,
            dtype=self.dtype,
        )

    def _check_data(self, batch: Batch) -> None:
        """The first batch must be what the backbone was built for."""
        dataset = type(self.spec.dataset).__name__
        expected = tuple(self.spec.dataset.data_shape)
        if tuple(batch.x1.shape[1:]) != expected or batch.x1.shape[0] != self.local_batch:
            raise TrainingError(
                f"dataset {dataset} gave a batch of shape {tuple(batch.x1.shape)}, but the backbone was built for data "
                f"of shape {expected} (batch {self.local_batch}): the dataset's data_shape and its samples disagree"
            )
        if not batch.x1.is_floating_point():
            raise TrainingError(f"dataset {dataset} gave {batch.x1.dtype} data; the backbone needs floating point")
        self._checked_data = True

    def loss(self, inputs: StepInput) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted objective for one step's inputs, and its named terms. A compiled step
        ('step') draws the objective's per-example uniforms (`ObjectiveInput.uniform`) here,
        from its own generator, as a compiled graph cannot draw from one; an eager step lets
        the objective draw them from the device generator."""
        uniforms = None
        if self.compile == "step":
            uniforms = torch.rand(
                len(inputs.x0), generator=self.objective_generator, device=self.device, dtype=self.dtype
            )
        return self._objective_loss(inputs, uniforms)

    def _weighted_objective(
        self, inputs: StepInput, uniforms: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`loss` itself, what a compiled step traces."""
        inp = ObjectiveInput(
            x0=inputs.x0,
            x1=inputs.batch.x1,
            s=inputs.times.s,
            t=inputs.times.t,
            interpolant=self.spec.interpolant,
            student=self.student.with_cond(**inputs.cond),
            teacher=self.teacher.with_cond(**inputs.cond),
            n_diagonal=inputs.times.n_diagonal,
            u=inputs.times.u,
            generator=None if uniforms is not None else self.device_generator,
            uniforms=uniforms,
        )
        autocast = PRECISIONS[self.spec.precision]
        with torch.autocast(self.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            out = self.spec.objective(inp)
        per_example = out.per_example.to(self.dtype)
        return self.spec.weighting(per_example, inputs.times.s, inputs.times.t), dict(out.terms)

    def optimise(self, inputs: StepInput) -> StepResult:
        """One optimisation step on `inputs`; skipped (no update) if the loss or the gradient
        is not finite. With a fused optimiser the skip is decided on the device (torch's
        `found_inf`, as under a gradient scaler), so the step never waits for the device;
        otherwise the host reads the flag."""
        loss, terms = self.loss(inputs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(self.parameters, self.context)
        clip = self.spec.grad_clip if self.spec.grad_clip is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, clip)
        loss = loss.detach()
        finite = distributed.all_finite(torch.isfinite(loss) & torch.isfinite(grad_norm), self.context)
        multiplier = self.spec.lr_schedule(self.step, self.spec.steps)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * multiplier
        if self.skips_on_device:
            self.optimizer.found_inf = (~finite).to(device=self.device, dtype=torch.float32)
            self.optimizer.step()
        elif bool(finite):
            self.optimizer.step()
        self.ema.update(self.net, apply=finite)
        self.step += 1
        result = StepResult(loss=loss, grad_norm=grad_norm, terms=_as_tensors(terms, loss), finite=finite)
        self._skips.add(result)
        return result

    @property
    def skips_on_device(self) -> bool:
        """Whether a skipped step is decided on the device: the optimiser is fused (torch's
        fused Adam, AdamW, SGD take a `found_inf` flag and leave everything as it was)."""
        fused = bool(self.optimizer.defaults.get("fused"))
        return fused and getattr(self.optimizer, "_step_supports_amp_scaling", False)

    @property
    def skipped(self) -> int:
        """Steps skipped so far (reads the device counter)."""
        return int(self._skips.counts[0])

    @property
    def consecutive_skips(self) -> int:
        """Skipped steps in a row up to now (reads the device counter)."""
        return int(self._skips.counts[1])

    # ------------------------------------------------------------------ the loop

    def fit(self, until: int | None = None) -> None:
        """Train until step `until` (default: the end, `spec.steps`), logging and checkpointing.

        Stopping early writes a checkpoint, so a later `fit` (or `--resume`) continues
        the same run. SIGINT or SIGTERM (preemption) lets the current step finish,
        writes a checkpoint and raises `Interrupted`; a second SIGINT stops at once.
        """
        spec = self.spec
        until = spec.steps if until is None else min(until, spec.steps)
        bar = tqdm(total=spec.steps, initial=self.step, disable=not self.progress, desc="train", dynamic_ncols=True)
        window = Window()
        started = time.perf_counter() - self.elapsed
        with self._stop_signals_finish_the_step():
            try:
                while self.step < until:
                    result = self.optimise(self.draw())
                    self.elapsed = time.perf_counter() - started
                    window.add(result)
                    bar.update(1)
                    if self.step == 1:
                        self._write_text("operative_config.gin", gin.operative_config_str())
                    log = self.step % spec.log_every == 0 or self.step == spec.steps
                    save = self.step % spec.checkpoint_every == 0 or self.step == until
                    if log or save or not self.skips_on_device:
                        self._check_skips()
                    if log:
                        record = window.flush(self.step, self.elapsed, self.skipped, self.optimizer)
                        bar.set_postfix(loss=f"{record['loss']:.4g}", skipped=self.skipped)
                        self._append_metrics(record)
                    stop = self._stop_requested(check_ranks=log)
                    if save or stop:
                        self.save()
                    if stop:
                        raise Interrupted(self.step, self.run_dir)
            finally:
                bar.close()

    def _check_skips(self) -> None:
        """Read the skip counters: log skipped steps since the last read, and stop the run when
        too many came in a row."""
        report = self._skips.read()
        since, self._last_check = self._last_check, self.step
        if not report.new:
            return
        what = report.what()
        which = "skipped" if report.new == 1 else f"{report.new} steps skipped since step {since}"
        self._log(f"step {self.step}: {which}, {what} not finite ({report.in_a_row} in a row)")
        if report.longest >= self.spec.max_consecutive_skips:
            raise TrainingError(
                f"{report.longest} consecutive steps had a non-finite loss or gradient ({what}); "
                f"stopping at step {self.step}. The last good checkpoint is intact"
                + (f" in {self.run_dir / 'checkpoints'}" if self.run_dir else "")
                + ". Lower the learning rate, clip gradients (train.grad_clip) or change the stop-gradient policy."
            )

    def _stop_requested(self, check_ranks: bool) -> bool:
        """Whether SIGINT/SIGTERM asked this run to stop. Under torchrun the ranks agree on it
        at log steps only (a collective costs a host synchronisation)."""
        if not self.context.distributed:
            return self._stop_signal is not None
        return check_ranks and not distributed.all_true(self._stop_signal is None, self.context)

    @contextmanager
    def _stop_signals_finish_the_step(self) -> Iterator[None]:
        """While training, SIGINT and SIGTERM set a flag the loop reads after each step."""

        def request_stop(signum: int, frame: Any) -> None:
            if self._stop_signal == signal.SIGINT and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now
            self._stop_signal = signum

        try:
            previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: leave signals alone
            yield
            return
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # ----------------------------------------------------------- state and files

    def state(self) -> ckpt.Checkpoint:
        """The run's full state, as a checkpoint."""
        ema = {f"{name}/{k}": v for name, net in self.ema.named().items() for k, v in net.state_dict().items()}
        rng = {
            "host": self.host_generator.get_state(),
            "device": self.device_generator.get_state(),
            "objective": self.objective_generator.get_state(),
        }
        rng["torch"] = torch.get_rng_state()
        state = {
            "step": self.step,
            "skipped": self.skipped,
            "consecutive_skips": self.consecutive_skips,
            "ema_updates": self.ema.updates,
            "elapsed_s": self.elapsed,
            "world_size": self.context.world_size,
        }
        return ckpt.Checkpoint(
            model=self.modules.state_dict(), ema=ema, optimizer=self.optimizer.state_dict(), rng=rng, state=state
        )

    def restore(self, found: ckpt.Checkpoint) -> None:
        """Continue from a checkpoint: weights, EMA, optimiser, generators and counters."""
        saved_world = found.state.get("world_size", 1)
        if saved_world != self.context.world_size:
            raise TrainingError(
                f"the checkpoint was written by {saved_world} processes, this run has {self.context.world_size}; "
                "exact resume needs the same number (each rank has its own data stream)"
            )
        ckpt.load_weights(self.modules, found.model, "model")
        for name, net in self.ema.named().items():
            ckpt.load_weights(net, ckpt.prefixed(found.ema, name), name)
        self.optimizer.load_state_dict(found.optimizer)
        self.host_generator.set_state(found.rng["host"])
        self.device_generator.set_state(found.rng["device"])
        if "objective" in found.rng:  # checkpoints written before compiled steps had it
            self.objective_generator.set_state(found.rng["objective"])
        torch.set_rng_state(found.rng["torch"])
        self.step = found.state["step"]
        self._skips = SkipCounter(self.device, total=found.state["skipped"], in_a_row=found.state["consecutive_skips"])
        self.ema.updates = found.state["ema_updates"]
        self.elapsed = found.state["elapsed_s"]
        self._batches = None  # a stream restarts from the restored step

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0, with a run directory)."""
        if self.run_dir is None or not self.context.is_main:
            return None
        return ckpt.save(self.run_dir / "checkpoints", self.step, self.state(), keep=self.spec.keep_checkpoints)

    def ema_nets(self) -> dict[str, nn.Module]:
        """{'ema_0.999': net, ...}"""
        return self.ema.named()

    def _prepare_run_dir(self, *, resume: bool, force: bool) -> None:
        assert self.run_dir is not None
        config = gin.config_str()
        config_file = self.run_dir / "config.gin"
        found = ckpt.latest(self.run_dir / "checkpoints", device=self.device)
        if resume:
            if found is None:
                raise TrainingError(f"nothing to resume in {self.run_dir}: no complete checkpoint under checkpoints/")
            if config_file.is_file() and not force:
                changes = config_changes(config_file.read_text(), config)
                if changes:
                    raise TrainingError(
                        f"the config differs from the one {self.run_dir} was started with; resume with --force "
                        "to accept the change:\n" + "\n".join(changes)
                    )
            for reason in found.passed_over:
                self._log(f"passed over an unreadable checkpoint: {reason}")
            self.restore(found.checkpoint)
            self._log(f"resuming from {found.path} (step {self.step})")
            self._forget_metrics_after(self.step)
        elif found is not None and not force:
            raise TrainingError(
                f"{self.run_dir} already holds a run (checkpoint at step {found.checkpoint.state['step']}); "
                "use --resume to continue it, or another --run-dir"
            )
        if self.context.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not resume or not config_file.is_file():
                config_file.write_text(config)

    def _forget_metrics_after(self, step: int) -> None:
        """Drop metric lines past the resumed checkpoint: those steps are trained again."""
        path = self.run_dir / "metrics.jsonl" if self.run_dir is not None else None
        if path is None or not path.is_file() or not self.context.is_main:
            return
        kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(path)

    def _write_text(self, name: str, text: str) -> None:
        if self.run_dir is not None and self.context.is_main:
            (self.run_dir / name).write_text(text)

    def _append_metrics(self, record: dict[str, Any]) -> None:
        if self.run_dir is not None and self.context.is_main:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def _log(self, message: str) -> None:
        if self.context.is_main:
            tqdm.write(f"flowmap: {message}", file=sys.stderr)


def config_changes(before: str, after: str) -> list[str]:
    """Binding lines that differ between two gin configs (comments and blank lines ignored)."""

    def lines(text: str) -> list[str]:
        return [ln.rstrip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]

    return [
        ln
        for ln in difflib.unified_diff(lines(before), lines(after), "started with", "now", lineterm="", n=0)
        if ln[:1] in "+-" and not ln.startswith(("+++", "---"))
    ]


def _as_tensors(terms: dict[str, Any], like: torch.Tensor) -> dict[str, torch.Tensor]:
    """An objective's named terms as detached 0-d tensors on `like`'s device."""
    return {name: torch.as_tensor(value, device=like.device).detach() for name, value in terms.items()}
