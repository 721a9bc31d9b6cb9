"""Open a finished (or interrupted) run directory: its config, weights and flow maps."""

from collections.abc import Sequence
from pathlib import Path

import gin

from flowmap_core import checkpoint as ckpt
from flowmap_core import config
from flowmap_core.errors import FlowmapError
from flowmap_core.evaluation import EvalResult, EvalSpec, GuidedResult, evaluate, evaluate_guided
from flowmap_core.flow_map import FlowMap
from flowmap_core.trainer import Trainer, TrainingError, TrainSpec

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
    run_dir: Path | str, bindings: Sequence[str] = (), imports: Sequence[str] = config.DEFAULT_IMPORTS
) -> Trainer:
    """A trainer holding the newest checkpoint of `run_dir` (its config, plus `bindings`)."""
    run_dir = Path(run_dir)
    config_file = run_dir / "config.gin"
    if not config_file.is_file():
        raise TrainingError(f"{run_dir} is not a run directory: it has no config.gin")
    config.parse([config_file], bindings, imports)
    trainer = Trainer(build_spec(), progress=False)
    found = ckpt.latest(run_dir / "checkpoints", device=trainer.device)
    if found is None:
        raise TrainingError(f"{run_dir} has no complete checkpoint under checkpoints/")
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
    )
