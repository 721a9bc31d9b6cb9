"""The adaptive-solver points of the ODE baseline: integrate a run's velocity b_t = v_{t,t} with
Dormand-Prince (torchdiffeq's dopri5) at each tolerance, count the network evaluations, and score
the samples with the run's own metric.

    python tools/adaptive_ode.py RUN_DIR [--tolerances 1e-2 1e-3 1e-4] [--samples 200000] [--weights W]

The noise and the true samples are drawn as `flowmap eval` draws them (the same seed), so the
scores sit beside the report's fixed-step rows. The samples are integrated `evaluate.chunk` at a
time (the step size adapts to each chunk), and NFE is the mean over chunks of the velocity
evaluations one sample took (rtol = atol = the tolerance). Writes RUN_DIR/adaptive_ode.md and
adds `dopri5 tol <tol> score` and `dopri5 tol <tol> NFE` to the tool scores of
RUN_DIR/scores.json, which `flowmap sweep` averages over seeds.
"""

import argparse
import statistics
import sys
from pathlib import Path

import torch

from flowmap_core import report
from flowmap_core.run_sampler import RunSampler
from flowmap_core.rundir import RunDir


def score(run_dir: Path, tolerances: tuple[float, ...], samples: int, weights: str | None) -> dict[str, float]:
    """Score dopri5 samples of the run's velocity at each tolerance; returns the new scores."""
    sampler = RunSampler.open(run_dir, weights, [f"evaluate.num_samples = {samples}"])
    x0 = sampler.noise()
    metric = getattr(sampler.spec.metric, "name", type(sampler.spec.metric).__name__)
    found: dict[str, float] = {}
    rows = []
    for tolerance in tolerances:
        outs = sampler.sample_chunks(x0, ode="dopri5", rtol=tolerance, atol=tolerance)
        value = sampler.score(torch.cat([out.x.cpu() for out in outs]))
        nfe = statistics.fmean(out.nfe for out in outs)
        found |= {f"dopri5 tol {tolerance:g} score": value, f"dopri5 tol {tolerance:g} NFE": nfe}
        rows.append([f"{tolerance:g}", f"{nfe:.1f}", report.score(value)])
    text = (
        f"dopri5 on the velocity of {sampler.weights}, {samples:,} samples, {metric} against the data.\n\n"
        + report.table(["tolerance (rtol = atol)", "NFE", "score"], rows)
        + "\n"
    )
    run = RunDir(run_dir)
    run.write("adaptive_ode.md", text)
    run.add_tool_scores(found)
    print(text)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="+")
    parser.add_argument("--tolerances", type=float, nargs="+", default=[1e-2, 1e-3, 1e-4])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--weights", default=None, help="ema_<rate> or online (default: the first EMA)")
    args = parser.parse_args(argv)
    if min(args.tolerances) <= 0 or args.samples < 1:
        parser.error("tolerances and --samples must be positive")
    for run_dir in args.run_dir:
        score(run_dir, tuple(args.tolerances), args.samples, args.weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
