"""Run with `torchrun --standalone --nproc_per_node=2 tests/distributed/one_step.py --out FILE`.

For each objective, every rank takes one optimiser step on its own half of a batch
(gradients averaged by `flowmap_core.distributed`), and rank 0 also takes one
single-process step on the union of both halves from the same initial weights. Rank 0
writes the largest absolute difference of the weights, buffers and EMA after the step to
FILE, and, as controls, the difference when the gradient all-reduce is switched off and,
for a learned weighting, when its running loss scale is kept per rank.
"""

import argparse
import json
import sys
from unittest import mock

import torch

from flowmap_core import config, distributed, runs
from flowmap_core.protocols import Batch, TimeSample
from flowmap_core.trainer import StepInput, Trainer

# method: its smoke config and extra bindings.
METHODS = {
    "fm": ["checkerboard_fm.gin"],
    "lsd": ["checkerboard_lsd.gin"],
    "esd": ["checkerboard_esd.gin"],
    "psd_m": ["checkerboard_psd_m.gin"],
    "lsd_learned": [
        "checkerboard_lsd.gin",
        "train.weighting = @weighting.learned()",
        "weighting.learned.per_term = True",
    ],
}
# Methods whose weighting keeps running means of the batch (SharesBatchStatistics).
SHARES_STATISTICS = ["lsd_learned"]


def half(trainer: Trainer, rank: int) -> StepInput:
    """Rank `rank`'s half batch, the same on every process."""
    trainer.host_generator.manual_seed(1000 + rank)
    trainer.device_generator.manual_seed(2000 + rank)
    return trainer.draw()


def union(a: StepInput, b: StepInput) -> StepInput:
    """Both halves in one batch, diagonal rows first (the split objective's layout)."""
    ka, kb = a.times.n_diagonal, b.times.n_diagonal

    def rows(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:ka], y[:kb], x[ka:], y[kb:]])

    times = TimeSample(s=rows(a.times.s, b.times.s), t=rows(a.times.t, b.times.t), n_diagonal=ka + kb)
    label = None if a.batch.label is None else rows(a.batch.label, b.batch.label)
    batch = Batch(x1=rows(a.batch.x1, b.batch.x1), label=label)
    return StepInput(batch=batch, x0=rows(a.x0, b.x0), times=times)


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    state = {f"model/{k}": v for k, v in trainer.modules.state_dict().items()}
    for name, net in trainer.ema_nets().items():
        state.update({f"{name}/{k}": v for k, v in net.state_dict().items()})
    return state


def largest_gap(a: Trainer, b: Trainer) -> float:
    ours, reference = weights(a), weights(b)
    return max((ours[k] - reference[k]).abs().amax().item() for k in reference if ours[k].numel())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    context = distributed.setup("cpu")
    differences = {}
    try:
        for method in METHODS:
            smoke, *bindings = METHODS[method]
            config.parse(
                [config.GIN_DIR / "smoke" / smoke], ["train.dtype = 'float64'", "train.batch_size = 64", *bindings]
            )
            # A spec each: a learned weighting is a module with state, and must not be shared.
            parallel = Trainer(runs.build_spec(), context=context, progress=False)
            unsynced = Trainer(runs.build_spec(), context=context, progress=False)
            halves = [half(parallel, r) for r in range(context.world_size)]
            parallel.optimise(halves[context.rank])
            with mock.patch.object(distributed, "average_gradients"):
                unsynced.optimise(halves[context.rank])
            if method in SHARES_STATISTICS:
                with mock.patch.object(distributed, "sum_over_ranks", lambda value, context: value):
                    unshared = Trainer(runs.build_spec(), context=context, progress=False)
                unshared.optimise(halves[context.rank])
            if context.is_main:
                single = Trainer(runs.build_spec(), progress=False)
                single.optimise(union(*halves))
                differences[method] = largest_gap(parallel, single)
                differences[f"{method} without all-reduce"] = largest_gap(unsynced, single)
                if method in SHARES_STATISTICS:
                    differences[f"{method} without shared statistics"] = largest_gap(unshared, single)
    finally:
        distributed.teardown(context, completed=sys.exc_info()[0] is None)
    if context.is_main:
        with open(args.out, "w") as f:
            json.dump(differences, f)


if __name__ == "__main__":
    main()
