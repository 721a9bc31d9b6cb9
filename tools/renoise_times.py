"""Where a consistency sampler should re-noise: a trained run's k-step score over the re-noise power.

    python tools/renoise_times.py RUN_DIR [RUN_DIR ...] [--steps 2] [--powers 0.5 1 1.74 3] [--gin BINDING]

`sampler.consistency` re-noises at s_i = (i / k)^p (`renoise_power` p; p = 1 is equal steps,
p = 1.74 at k = 2 is sCM's TrigFlow t = 1.1). Each run is sampled from the evaluation's own
noise (its p = 1 column is report.md's k-step row when the run was trained with p = 1), and a
last row gives the mean and std over the runs, so three seeds of a recipe read as one result.
"""

import argparse
import statistics

from flowmap_core import report
from flowmap_core.run_sampler import RunSampler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--steps", type=int, default=2, help="k, the step count (>= 2)")
    parser.add_argument("--powers", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.5, 1.74, 2.0, 3.0])
    parser.add_argument("--weights", default=None, help="ema_<rate> or online (default: the first EMA)")
    parser.add_argument("--gin", action="append", default=[], metavar="BINDING", help="e.g. evaluate.num_samples=20000")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be >= 2: one step never re-noises")

    rows, columns = [], [[] for _ in args.powers]
    for run_dir in args.run_dirs:
        row = [run_dir]
        for column, power in zip(columns, args.powers, strict=True):
            bindings = [*args.gin, f"sampler.consistency.renoise_power = {power}"]
            sampler = RunSampler.open(run_dir, args.weights, bindings)
            if type(sampler.spec.sampler).__name__ != "ConsistencySampler":
                parser.error(f"{run_dir} is not evaluated with sampler.consistency")
            value = sampler.score(sampler.sample(sampler.noise(), args.steps).x)
            column.append(value)
            row.append(report.score(value))
        rows.append(row)
    if len(args.run_dirs) > 1:
        rows.append(["mean ± std"] + [f"{statistics.mean(c):.4g} ± {statistics.stdev(c):.2g}" for c in columns])
    head = ["run"] + [f"p = {power:g} (s_1 = {(1 / args.steps) ** power:.3f})" for power in args.powers]
    print(
        f"{args.steps}-step {sampler.spec.metric.name if hasattr(sampler.spec.metric, 'name') else 'score'}"
        f", {sampler.spec.num_samples:,} samples, the evaluation's noise\n"
    )
    print(report.table(head, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
