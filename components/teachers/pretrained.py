"""A frozen network from another run as the teacher: two-stage distillation."""

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import attrs
import torch
import torch.distributed as dist
from torch import Tensor, nn

from flowmap_core import config, runs
from flowmap_core.flow_map import FlowMap
from flowmap_core.protocols import FlowMapLike
from flowmap_core.registry import register
from flowmap_core.rundir import RunDir


def load_finished_run(run_dir: str | Path, train_config: str | None, weights: str | None) -> FlowMap:
    """The frozen flow map of the finished run in `run_dir` (its EMA by default).

    With `train_config`, a missing or unfinished run is trained (or resumed) first, in a
    subprocess, by rank 0 of a distributed job while the others wait.
    """
    path = Path(run_dir)
    trainer = _open(path)
    if trainer is None or trainer.step < trainer.spec.steps:
        if train_config is None:
            raise ValueError(
                f"the pretrained run {str(path)!r} is missing or unfinished: train it first "
                f"(flowmap train CONFIG --run-dir {path}) or give its config to train it here"
            )
        _train(path, train_config, resume=trainer is not None)
        trainer = _open(path)
    name = weights or runs.headline_weights(trainer)
    flow = runs.flow_maps(trainer, [name])[name]
    flow.net.eval().requires_grad_(False)
    return flow


def _open(path: Path):
    run = RunDir(path)
    if not run.is_run() or not run.checkpoint_steps():
        return None
    with config.isolated():
        return runs.open_run(path)


def _train(path: Path, train_config: str, resume: bool) -> None:
    if not dist.is_initialized() or dist.get_rank() == 0:
        command = [sys.executable, "-m", "flowmap_core.cli", "train", train_config, "--run-dir", str(path)]
        command += ["--no-eval", "--no-progress"] + (["--resume"] if resume else [])
        print(f"flowmap: training the pretrained run first: flowmap {' '.join(command[3:])}", file=sys.stderr)
        subprocess.run(command, check=True)
    if dist.is_initialized():
        dist.barrier()


def placed_like(flow: FlowMap, x: Tensor) -> FlowMap:
    """`flow` with its network on x's device and dtype (moved once, in place)."""
    parameter = next(flow.net.parameters())
    if parameter.device != x.device or parameter.dtype != x.dtype:
        flow.net.to(device=x.device, dtype=x.dtype)
    return flow


@register("teacher", "pretrained")
@attrs.define(frozen=True, kw_only=True)
class Pretrained:
    """The frozen flow map of the finished run in `run_dir` (progressive flow map matching).

    Loaded when the config is built; with `config`, a missing or unfinished run is
    trained first (stage one), so a two-stage method is one command. `weights` picks its
    EMA or online weights (default: its first EMA). Its own parameterisation reads it.
    """

    run_dir: str
    config: str | None = None
    weights: str | None = None
    _flow: FlowMap = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_flow", load_finished_run(self.run_dir, self.config, self.weights))

    def flow_map(self, student: FlowMapLike, ema: Mapping[float, nn.Module]) -> FlowMapLike:
        assert isinstance(student, FlowMap)
        like = next(student.net.parameters())
        return placed_like(self._flow, torch.empty(0, device=like.device, dtype=like.dtype))
