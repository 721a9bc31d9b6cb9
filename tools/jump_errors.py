"""Where a run's few-step error sits: k-step sampling with one jump taken whole, the rest refined.

    python tools/jump_errors.py RUN_DIR [--steps 4] [--refine 4] [--weights ema_0.999] [--gin BINDING]

k-step sampling composes the maps X_{i/k, (i+1)/k}. Refining a jump into `--refine` equal
sub-jumps makes it more accurate (the more steps, the lower the KL), so sampling with every
jump refined except jump i isolates the error that jump i adds. The table lists, on the
evaluation's own noise (its "k steps" row is report.md's), the KL of the plain k-step path, of
the fully refined path, and of each path with one jump taken whole: the jump whose row is
highest carries the most error, and a time sampler can move training pairs there (e.g.
`time_sampler.shift`). `--gin` changes the evaluation (e.g. `evaluate.num_samples = 20000`).
"""

import argparse

import torch

from flowmap_core import report
from flowmap_core.run_sampler import RunSampler
from flowmap_core.sampling import uniform_grid


def grid_with_whole_jump(steps: int, refine: int, whole: int | None) -> torch.Tensor:
    """The uniform grid of `steps * refine` jumps, without the inner points of jump `whole`."""
    fine = uniform_grid(steps * refine, dtype=torch.float64)
    if whole is None:
        return fine
    inner = torch.arange(whole * refine + 1, (whole + 1) * refine)
    keep = torch.ones(fine.numel(), dtype=torch.bool)
    keep[inner] = False
    return fine[keep]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--steps", type=int, default=4, help="k, the step count to dissect")
    parser.add_argument("--refine", type=int, default=4, help="sub-jumps per refined jump")
    parser.add_argument("--weights", default=None, help="ema_<rate> or online (default: the first EMA)")
    parser.add_argument("--gin", action="append", default=[], metavar="BINDING", help="e.g. evaluate.num_samples=20000")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.refine < 2:
        parser.error("--steps must be >= 1 and --refine >= 2")

    sampler = RunSampler.open(args.run_dir, args.weights, args.gin)
    x0 = sampler.noise()

    def score(grid: torch.Tensor) -> str:
        return report.score(sampler.score(sampler.sample(x0, grid=grid).x))

    k, r = args.steps, args.refine
    rows = [[f"{k} steps", k, score(uniform_grid(k, dtype=torch.float64))]]
    rows.append([f"every jump refined x{r}", k * r, score(grid_with_whole_jump(k, r, None))])
    for i in range(k):
        grid = grid_with_whole_jump(k, r, i)
        rows.append([f"refined, jump {i / k:.3g} -> {(i + 1) / k:.3g} whole", grid.numel() - 1, score(grid)])
    print(f"{args.run_dir} ({sampler.weights}), {sampler.spec.num_samples:,} samples, the evaluation's noise\n")
    print(report.table(["path", "jumps", getattr(sampler.spec.metric, "name", "score")], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
