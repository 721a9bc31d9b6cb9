"""Open a finished (or interrupted) run directory: its config, weights and flow maps."""

from collections.abc import Sequence
from pathlib import Path

import gin

from flowmap_core import checkpoint as ckpt
from flowmap_core import config
from flowmap_core.errors import FlowmapError
from flowmap_core.evaluation import EvalSpec
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
    """Call the configurable `name`; a missing binding or a rejected argument is a ConfigError."""
    try:
        return gin.get_configurable(name)()
    except FlowmapError:
        raise
    except (ValueError, TypeError, RuntimeError) as error:
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
    """Named flow maps of a trainer: its EMAs ('ema_0.999', ...) and 'online'."""
    available = {**trainer.ema_nets(), ONLINE: trainer.net}
    chosen = list(available) if weights is None else list(weights)
    unknown = [w for w in chosen if w not in available]
    if unknown:
        raise TrainingError(f"unknown weights {', '.join(unknown)}; this run has {', '.join(available)}")
    return {name: trainer.flow_map(available[name].eval()) for name in chosen}


def headline_weights(trainer: Trainer) -> str:
    """The weights a run is judged by: its first EMA (the online weights if it keeps none)."""
    return next(iter(trainer.ema_nets()), ONLINE)
