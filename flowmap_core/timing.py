"""Time training steps against each other in one process, so that machine load cancels in the
ratios: contenders run in interleaved rounds and each reports its median step time."""

import statistics
import time
from collections.abc import Callable, Sequence

import torch

from flowmap_core import config, runs
from flowmap_core.trainer import Trainer


def build(config_file: str | Sequence[str], bindings: Sequence[str]) -> Trainer:
    """A trainer (without a run directory) of the gin file(s) and bindings."""
    config.parse([config_file] if isinstance(config_file, str) else list(config_file), list(bindings))
    return Trainer(runs.build_spec(), progress=False)


def step_of(trainer: Trainer) -> Callable[[], object]:
    """One gin-wired training step of `trainer`, as a contender to time."""
    return lambda: trainer.optimise(trainer.draw())


def median_step_times(contenders: dict[str, Callable[[], object]], steps: int, rounds: int) -> dict[str, float]:
    """Median seconds per step of each contender, timed in interleaved rounds after 5 warm-up steps."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for step in contenders.values():
        for _ in range(5):
            step()
    for _ in range(rounds):
        for name, step in contenders.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(values) for name, values in times.items()}
