"""Open a finished (or interrupted) run directory: its config, weights and flow maps; score it
and write its scores.json, report.md and figures."""

from collections.abc import Sequence
from pathlib import Path

import gin
import numpy as np
from PIL import Image

from flowmap_core import config, figures, report
from flowmap_core.errors import FlowmapError, TrainingError
from flowmap_core.evaluation import EvalResult, EvalSpec, GuidedResult, as_images, evaluate, evaluate_guided
from flowmap_core.flow_map import FlowMap
from flowmap_core.rundir import RunDir, RunDirError
from flowmap_core.scores import Budget, Row, Scores, Table
from flowmap_core.spec import TrainSpec
from flowmap_core.trainer import Trainer

ONLINE = "online"


def build_spec() -> TrainSpec:
    """The `TrainSpec` of the parsed gin config."""
    return _build("train")


def build_eval_spec() -> EvalSpec:
    """The `EvalSpec` of the parsed gin config."""
    return _build("evaluate")


def _build(name: str):
    """Call the configurable `name`; a missing binding or a rejected argument is a ConfigError
    that names the binding (`objective.psd.h = 2.0: ...`)."""
    try:
        return gin.get_configurable(name)()
    except FlowmapError:
        raise
    except config.CONFIGURABLE_ERRORS as error:
        named = config.configurable_error(error)
        if named is not None:
            raise named from error
        raise config.ConfigError(f"the config does not build: {error}") from error


def open_run(
    run_dir: Path | str | RunDir, bindings: Sequence[str] = (), imports: Sequence[str] = config.DEFAULT_IMPORTS
) -> Trainer:
    """A trainer holding the newest checkpoint of `run_dir` (its config, plus `bindings`)."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    config.parse([run.require().config], bindings, imports)
    trainer = Trainer(build_spec(), progress=False)
    found = run.latest_checkpoint(device=trainer.device)
    if found is None:
        raise RunDirError(f"{run.path} has no complete checkpoint under checkpoints/")
    trainer.restore(found.checkpoint)
    return trainer


def flow_maps(trainer: Trainer, weights: Sequence[str] | None = None) -> dict[str, FlowMap]:
    """Named flow maps of a trainer: its EMAs ('ema_0.999', ...) and 'online', unconditional
    (the null class at guidance 1 for conditional runs)."""
    available = {**trainer.ema_nets(), ONLINE: trainer.net}
    chosen = list(available) if weights is None else list(weights)
    unknown = [w for w in chosen if w not in available]
    if unknown:
        raise TrainingError(f"unknown weights {', '.join(unknown)}; this run has {', '.join(available)}")
    unconditional = {k: v.to(trainer.device) for k, v in trainer.spec.conditioning.unconditional().items()}
    return {name: trainer.flow_map(available[name].eval()).with_cond(**unconditional) for name in chosen}


def headline_weights(trainer: Trainer) -> str:
    """The weights a run is judged by: its first EMA (the online weights if it keeps none)."""
    return next(iter(trainer.ema_nets()), ONLINE)


def evaluate_run(trainer: Trainer, spec: EvalSpec, weights: Sequence[str] | None = None) -> EvalResult:
    """Score the named weights of a trainer (all of them by default) with `spec`."""
    return evaluate(
        spec,
        flow_maps(trainer, weights),
        trainer.spec.dataset,
        interpolant=trainer.spec.interpolant,
        device=trainer.device,
        dtype=trainer.dtype,
    )


def evaluate_guided_run(trainer: Trainer, spec: EvalSpec) -> GuidedResult | None:
    """Class-conditional scores at `spec.guidance_scales` (None if it names none)."""
    if not spec.guidance_scales:
        return None
    dataset = trainer.spec.dataset
    if not getattr(dataset, "num_classes", None):
        name = type(dataset).__name__
        raise TrainingError(f"evaluate.guidance_scales needs a labelled dataset; {name} has no classes")
    name = headline_weights(trainer)
    X = flow_maps(trainer, [name])[name]
    return evaluate_guided(
        spec,
        X,
        trainer.spec.conditioning,
        dataset,
        interpolant=trainer.spec.interpolant,
        device=trainer.device,
        dtype=trainer.dtype,
        weights=name,
    )


def budget(trainer: Trainer) -> Budget:
    """What the trainer's run has cost so far."""
    spec = trainer.spec
    return Budget(
        steps=trainer.step,
        planned=spec.steps,
        seconds=trainer.elapsed,
        batch_size=spec.batch_size,
        skipped=trainer.skipped,
    )


def settings(trainer: Trainer) -> list[tuple[str, str]]:
    """(setting, value) rows describing a run's components and budget."""
    spec = trainer.spec

    def name(component: object) -> str:
        return getattr(component, "registry_name", None) or type(component).__name__

    optimizer = trainer.optimizer
    return [
        ("dataset", name(spec.dataset)),
        ("backbone", f"{name(spec.backbone)} ({sum(p.numel() for p in trainer.net.parameters()):,} parameters)"),
        ("parameterisation", name(spec.parameterisation)),
        ("interpolant", name(spec.interpolant)),
        ("objective", repr(spec.objective)),
        ("time sampler", repr(spec.time_sampler)),
        ("weighting", name(spec.weighting)),
        ("optimizer", f"{type(optimizer).__name__} lr {trainer.base_lrs[0]:g}, schedule {spec.lr_schedule!r}"),
        ("steps x batch", f"{spec.steps:,} x {spec.batch_size:,}"),
        ("EMA rates", ", ".join(f"{r:g}" for r in spec.ema_rates)),
        ("teacher", repr(spec.teacher)),
        ("gradient clip", str(spec.grad_clip)),
        ("processes", str(trainer.context.world_size)),
    ]


def score_run(
    trainer: Trainer, run_dir: Path | str | RunDir, spec: EvalSpec, weights: Sequence[str] | None = None
) -> Scores:
    """Score the trainer's named weights (all of them by default) at every step count, and its
    guided sampling if `spec` names guidance scales; write the scores and the budget into
    scores.json (keeping a tool's scores), then the figures and report.md rendered from them."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    result = evaluate_run(trainer, spec, weights)
    guided = evaluate_guided_run(trainer, spec)
    tables = [result.to_table(), *([] if guided is None else [guided.to_table()])]
    scores = run.update_scores(tables=tables, seed=trainer.spec.seed, budget=budget(trainer))
    images = len(trainer.spec.dataset.data_shape) == 3
    drawn, guided_drawn = figures.write_run_figures(run.path, result, as_images(trainer.spec.dataset), guided, images)
    run.write(run.report.name, report.run_report(run.name, settings(trainer), scores, drawn, guided_drawn))
    log_scores(trainer, run, tables, [*drawn, *guided_drawn])
    return scores


def log_scores(trainer: Trainer, run: RunDir, tables: Sequence[Table], figure_files: Sequence[str]) -> None:
    """An evaluation in the run's experiment tracker (`train.logger`), at the trainer's step:
    every score as <metric>/<weights, sampler>/<k steps or NFE>, each table as text, and the figures."""
    if trainer.spec.logger is None or not trainer.context.is_main:
        return
    session = trainer.spec.logger.open(run.path, None)
    try:
        for table in tables:
            values = {
                f"{table.metric}/{row_label(row)}/{report.column_name(count, table.unit)}": value
                for row in table.rows
                for count, value in zip(table.counts, row.values, strict=True)
            }
            session.scalars(trainer.step, values)
            session.text(trainer.step, f"scores/{table.kind}", report.score_table(table))
        for name in figure_files:
            with Image.open(run.path / name) as picture:
                session.image(trainer.step, f"figures/{name}", np.asarray(picture.convert("RGB")))
    finally:
        session.close()


def row_label(row: Row) -> str:
    """A score row's name in a tracker: its weights, sampler and guidance scale."""
    parts = [row.weights, row.sampler] + ([] if row.guidance is None else [f"w = {row.guidance:g}"])
    return ", ".join(parts)


def record_budget(trainer: Trainer, run_dir: Path | str | RunDir) -> Scores:
    """Record the trainer's budget and seed in scores.json (after training, without scoring)."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    return run.update_scores(seed=trainer.spec.seed, budget=budget(trainer))
