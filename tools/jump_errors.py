"""Where a run's few-step error sits: k-step sampling with one jump taken whole, the rest refined.

    python tools/jump_errors.py RUN_DIR [--steps 4] [--refine 4] [--weights ema_0.999]

k-step sampling composes the maps X_{i/k, (i+1)/k}. Refining a jump into `--refine` equal
sub-jumps makes it more accurate (the more steps, the lower the KL), so sampling with every
jump refined except jump i isolates the error that jump i adds. The table lists, on the
same noise, the KL of the plain k-step path, of the fully refined path, and of each path
with one jump taken whole: the jump whose row is highest carries the most error, and a time
sampler can move training pairs there (e.g. `time_sampler.shift`).
"""

import argparse

import torch

from flowmap_core import runs
from flowmap_core.sampling import flow_map_sample, uniform_grid


def grid_with_whole_jump(steps: int, refine: int, whole: int | None) -> torch.Tensor:
    """The uniform grid of `steps * refine` jumps, without the inner points of jump `whole`."""
    fine = uniform_grid(steps * refine, dtype=torch.float64)
    if whole is None:
        return fine
    inner = torch.arange(whole * refine + 1, (whole + 1) * refine)
    keep = torch.ones(fine.numel(), dtype=torch.bool)
    keep[inner] = False
    return fine[keep]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--steps", type=int, default=4, help="k, the step count to dissect")
    parser.add_argument("--refine", type=int, default=4, help="sub-jumps per refined jump")
    parser.add_argument("--weights", default=None, help="ema_<rate> or online (default: the first EMA)")
    args = parser.parse_args()
    if args.steps < 1 or args.refine < 2:
        parser.error("--steps must be >= 1 and --refine >= 2")

    trainer = runs.open_run(args.run_dir)
    spec = runs.build_eval_spec()
    weights = args.weights or runs.headline_weights(trainer)
    X = runs.flow_maps(trainer, [weights])[weights]
    dataset = trainer.spec.dataset
    generator = torch.Generator().manual_seed(spec.seed)
    x0 = torch.randn((spec.num_samples, *dataset.data_shape), generator=generator).to(trainer.device)

    def score(grid: torch.Tensor) -> float:
        chunks = [flow_map_sample(X, chunk, grid=grid.to(chunk)).x.cpu() for chunk in x0.split(spec.chunk)]
        return spec.score(torch.cat(chunks), dataset)

    k, r = args.steps, args.refine
    print(f"{args.run_dir} ({weights}), {spec.num_samples:,} samples, one noise draw for every row\n")
    print("| path | jumps | KL |\n|---|---|---|")
    print(f"| {k} steps | {k} | {score(uniform_grid(k, dtype=torch.float64)):.4f} |", flush=True)
    print(f"| every jump refined x{r} | {k * r} | {score(grid_with_whole_jump(k, r, None)):.4f} |", flush=True)
    for i in range(k):
        grid = grid_with_whole_jump(k, r, i)
        print(
            f"| refined, jump {i / k:.3g} -> {(i + 1) / k:.3g} whole | {grid.numel() - 1} | {score(grid):.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
