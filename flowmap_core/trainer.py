"""One generic training loop: it knows no method, dataset or network; gin supplies them.

About 600 lines: the loop with its compiled-step, resume, skip and rollback handling, which
read and restore the same state (the rollback's decision lives in `rollback.py`, the spec and
the run directory in `spec.py` and `rundir.py`).

A run is described by a `TrainSpec` (gin name `train`, `flowmap_core.spec`): the components
(dataset, backbone, parameterisation, interpolant, objective, time sampler, weighting,
optimiser, learning-rate schedule) and the loop's settings. Each step draws a batch of data,
noise x0 and times (s, t), evaluates the objective with the online network as student and the
online network or an EMA as teacher, reduces it with the weighting, and takes one
optimiser step with gradient clipping. Steps whose loss or gradient is not finite are
skipped and counted; too many in a row stop the run with the last good checkpoint intact.

With a run directory (`flowmap_core.rundir.RunDir`) the trainer writes its config.gin at the
start, operative_config.gin after the first step, metrics.jsonl and checkpoints/. Only rank 0
writes.

This file is about 500 lines: the step, the loop and the run's checkpoint state share the
trainer's networks, optimiser, generators and counters, and read best together.
"""

import copy
import functools
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
from flowmap_core import config, data, distributed, records, registry
from flowmap_core.ema import EMA
from flowmap_core.errors import TrainingError
from flowmap_core.flow_map import FlowMap
from flowmap_core.protocols import (
    Batch,
    Draw,
    LogSession,
    ObjectiveInput,
    SharesBatchStatistics,
    StreamRequest,
    TimeSample,
)
from flowmap_core.rollback import ROLLBACK_RESEED, Sentinel
from flowmap_core.rundir import RunDir
from flowmap_core.spec import DTYPES, PRECISIONS, TrainSpec
from flowmap_core.step_stats import SkipCounter, StepResult, Window


class Interrupted(RuntimeError):
    """Training was interrupted (SIGINT / SIGTERM) after a checkpoint was written."""

    def __init__(self, step: int, run_dir: Path | None):
        self.step = step
        self.run_dir = run_dir
        where = f" --run-dir {run_dir}" if run_dir else ""
        super().__init__(
            f"interrupted at step {step}; a checkpoint was written. Resume with: flowmap train --resume{where}"
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
        after_first_step: Callable[[], None] | None = None,
    ):
        self.spec = spec
        self.after_first_step = after_first_step
        self.context = context or distributed.Context(device=distributed.resolve_device(spec.device))
        self.run = RunDir(run_dir) if run_dir is not None else None
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
        if spec.warm_start is not None:
            try:
                spec.warm_start.apply(self.net)
            except ValueError as error:
                raise TrainingError(str(error)) from error
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
        self.lr_scale = 1.0
        self.sentinel = None if spec.rollback is None else Sentinel(spec.rollback)
        self._good: ckpt.Checkpoint | None = None
        self._skips = SkipCounter(self.device)
        self._last_check = 0
        self.elapsed = 0.0
        self._stop_signal: int | None = None
        self._checked_data = False
        self._batches: Iterator[Batch] | None = None

        if self.run is not None:
            self._prepare_run_dir(self.run, resume=resume, force=force)

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
            if getattr(type(part), "registry_family", None) != "derivative":
                continue
            for X in (self.student, self.teacher):
                why = part.unavailable(X) if hasattr(X, "net") else None
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
        x0 = torch.randn(batch.x1.shape, generator=self.device_generator, device=self.device, dtype=self.dtype)
        if self.spec.coupling is not None:
            x0 = self.spec.coupling(x0, batch.x1, batch.label)
        times = self.spec.time_sampler(
            Draw(
                n=n,
                step=self.step,
                total_steps=self.spec.steps,
                generator=self.host_generator,
                device=torch.device("cpu"),
                dtype=self.dtype,
                interpolant=self.spec.interpolant,
            )
        )
        times = attrs.evolve(
            times,
            s=data.to_device(times.s, self.device),
            t=data.to_device(times.t, self.device),
            u=data.to_device(times.u, self.device),
        )
        cond = self.spec.conditioning(batch, generator=self.host_generator, n_diagonal=times.n_diagonal)
        return StepInput(batch=batch, x0=x0, times=times, cond=cond)

    def stream_request(self) -> StreamRequest:
        """What this process asks the dataset for: its share of the batch, from the current step on."""
        return StreamRequest(
            batch_size=self.local_batch,
            seed=self.spec.seed + (0 if self.sentinel is None else self.sentinel.rollbacks * ROLLBACK_RESEED),
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
            step=self.step,
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
            group["lr"] = base * multiplier * self.lr_scale
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
        tracker = self._open_tracker()
        if self.sentinel is not None:
            self._keep_good_state()
        with self._stop_signals_finish_the_step():
            try:
                while self.step < until:
                    result = self.optimise(self.draw())
                    self.elapsed = time.perf_counter() - started
                    if self.sentinel is not None:
                        why = self.sentinel.watch(float(result.loss))
                        if why is not None:
                            self._roll_back(why, window)
                            bar.n = self.step
                            continue
                    window.add(result)
                    bar.update(1)
                    if self.step == 1:
                        self._write_text("operative_config.gin", gin.operative_config_str())
                        if tracker is not None:
                            tracker.text(self.step, "operative_config", gin.operative_config_str())
                        if self.after_first_step is not None:
                            self.after_first_step()
                    log = self.step % spec.log_every == 0 or self.step == spec.steps
                    save = self.step % spec.checkpoint_every == 0 or self.step == until
                    if log or save or not self.skips_on_device:
                        self._check_skips()
                    if log:
                        record = window.flush(self.step, self.elapsed, self.skipped, self.optimizer)
                        if hasattr(spec.dataset, "skipped"):
                            record["skipped_samples"] = spec.dataset.skipped
                        bar.set_postfix(loss=f"{record['loss']:.4g}", skipped=self.skipped)
                        self._append_metrics(record)
                        if tracker is not None:
                            tracker.scalars(self.step, tracked_scalars(record))
                    stop = self._stop_requested(check_ranks=log)
                    if save or stop:
                        self.save()
                        if self.sentinel is not None and self.sentinel.healthy:
                            self._keep_good_state()
                    if stop:
                        raise Interrupted(self.step, self.run.path if self.run else None)
            finally:
                bar.close()
                if tracker is not None:
                    tracker.close()

    def _keep_good_state(self) -> None:
        """Keep a copy of the current state to roll back to (`train.rollback`)."""
        self._good = copy.deepcopy(self.state())

    def _roll_back(self, why: str, window: Window) -> None:
        """Return to the kept state: lower the learning rate, reseed the data, log it (`flowmap_core.rollback`)."""
        rollback, sentinel = self.spec.rollback, self.sentinel
        if sentinel.rollbacks >= rollback.max_rollbacks:
            raise TrainingError(
                f"step {self.step}: {why}, after {sentinel.rollbacks} rollback(s), the most "
                f"rollback.max_rollbacks = {rollback.max_rollbacks} allows"
                + (f". The last good checkpoint is in {self.run.checkpoints}" if self.run else "")
            )
        bad_step, lr_scale, rollbacks = self.step, self.lr_scale * rollback.lr_factor, sentinel.rollbacks
        self.restore(copy.deepcopy(self._good))
        sentinel.rollbacks = rollbacks
        sentinel.rolled_back()
        self.lr_scale = lr_scale
        stream = (self.spec.seed + sentinel.rollbacks * ROLLBACK_RESEED) * 1_000_003 + self.context.rank
        self.host_generator.manual_seed(stream)
        self.device_generator.manual_seed(stream + 7919)
        window.reset()
        self._log(
            f"step {bad_step}: {why}; rolled back to step {self.step} (rollback {sentinel.rollbacks} of at most "
            f"{rollback.max_rollbacks}), learning rate x{self.lr_scale:g}, data reseeded"
        )
        if self.run is not None and self.context.is_main:
            self.run.forget_metrics_after(self.step)
            self.run.forget_checkpoints_after(self.step)
        self._append_metrics(
            {"step": self.step, "rollback": sentinel.rollbacks, "from_step": bad_step, "lr_scale": self.lr_scale}
        )

    def _open_tracker(self) -> LogSession | None:
        """The run's experiment tracker (`train.logger`), opened where this training starts."""
        if self.spec.logger is None or self.run is None or not self.context.is_main:
            return None
        return self.spec.logger.open(self.run.path, self.step)

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
                + (f" in {self.run.checkpoints}" if self.run else "")
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
            "lr_scale": self.lr_scale,
            "rollbacks": 0 if self.sentinel is None else self.sentinel.rollbacks,
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
        self.lr_scale = found.state.get("lr_scale", 1.0)
        if self.sentinel is not None:
            self.sentinel.rollbacks = found.state.get("rollbacks", 0)
        self._batches = None  # a stream restarts from the restored step

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0, with a run directory)."""
        if self.run is None or not self.context.is_main:
            return None
        return ckpt.save(self.run.checkpoints, self.step, self.state(), keep=self.spec.keep_checkpoints)

    def ema_nets(self) -> dict[str, nn.Module]:
        """{'ema_0.999': net, ...}"""
        return self.ema.named()

    def _prepare_run_dir(self, run: RunDir, *, resume: bool, force: bool) -> None:
        """Start the run in `run` (its config.gin), or continue it from its newest checkpoint."""
        config_text = gin.config_str()
        found = run.latest_checkpoint(device=self.device)
        if resume:
            if found is None:
                raise TrainingError(f"nothing to resume in {run.path}: no complete checkpoint under checkpoints/")
            if run.config.is_file() and not force:
                changes = config.config_changes(run.config.read_text(), config_text)
                if changes:
                    raise TrainingError(
                        f"the config differs from the one {run.path} was started with; resume with --force "
                        "to accept the change:\n" + "\n".join(changes)
                    )
            for reason in found.passed_over:
                self._log(f"passed over an unreadable checkpoint: {reason}")
            self.restore(found.checkpoint)
            self._log(f"resuming from {found.path} (step {self.step})")
            if self.context.is_main:
                run.forget_metrics_after(self.step)  # those steps are trained again
        elif found is not None and not force:
            raise TrainingError(
                f"{run.path} already holds a run (checkpoint at step {found.checkpoint.state['step']}); "
                "use --resume to continue it, or another --run-dir"
            )
        if self.context.is_main:
            run.create()
            if not resume or not run.config.is_file():
                run.write(run.config.name, config_text)

    def _write_text(self, name: str, text: str) -> None:
        if self.run is not None and self.context.is_main:
            self.run.write(name, text)

    def _append_metrics(self, record: dict[str, Any]) -> None:
        if self.run is not None and self.context.is_main:
            self.run.append_metrics(record)

    def _log(self, message: str) -> None:
        if self.context.is_main:
            tqdm.write(f"flowmap: {message}", file=sys.stderr)


def tracked_scalars(record: dict[str, Any]) -> dict[str, float]:
    """A metrics.jsonl record's numbers (but the step) as a tracker's train/<name> scalars."""
    return {
        f"train/{name}": float(value)
        for name, value in record.items()
        if name != "step" and isinstance(value, int | float) and not isinstance(value, bool)
    }


def _as_tensors(terms: dict[str, Any], like: torch.Tensor) -> dict[str, torch.Tensor]:
    """An objective's named terms as detached 0-d tensors on `like`'s device."""
    return {name: torch.as_tensor(value, device=like.device).detach() for name, value in terms.items()}
