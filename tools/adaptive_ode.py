"""The adaptive-solver points of the ODE baseline: integrate a run's velocity b_t = v_{t,t} with
Dormand-Prince (torchdiffeq's dopri5) at each tolerance, count the network evaluations, and score
the samples with the run's own metric.

    python tools/adaptive_ode.py RUN_DIR [--tolerances 1e-2 1e-3 1e-4] [--samples 200000] [--weights W]

The noise and the true samples are drawn as `flowmap eval` draws them (the same seed), so the
scores sit beside the report's fixed-step rows. The samples are integrated `evaluate.chunk` at a
time (the step size adapts to each chunk), and NFE is the mean over chunks of the velocity
evaluations one sample took (rtol = atol = the tolerance). Writes RUN_DIR/adaptive_ode.md and
adds `dopri5 tol <tol> score` and `dopri5 tol <tol> NFE` to RUN_DIR/scores.json, which
`tools/sweep.py --aggregate` averages over seeds.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

from sweep import SCORES


def score(run_dir: Path, tolerances: tuple[float, ...], samples: int, weights: str | None) -> dict[str, float]:
    """Score dopri5 samples of the run's velocity at each tolerance; returns the new scores."""
    import torch

    from flowmap_core import runs
    from flowmap_core.evaluation import draws
    from flowmap_core.sampling import ode_sample

    trainer = runs.open_run(run_dir, [f"evaluate.num_samples = {samples}"])
    spec = runs.build_eval_spec()
    name = weights or runs.headline_weights(trainer)
    X = runs.flow_maps(trainer, [name])[name]
    dataset = trainer.spec.dataset
    _, x0 = draws(spec, dataset, device=trainer.device, dtype=trainer.dtype)
    metric = getattr(spec.metric, "name", type(spec.metric).__name__)
    found: dict[str, float] = {}
    rows = []
    for tolerance in tolerances:
        outs = [
            ode_sample(X.velocity, chunk, solver="dopri5", rtol=tolerance, atol=tolerance)
            for chunk in x0.split(spec.chunk)
        ]
        value = spec.score(torch.cat([out.x.cpu() for out in outs]), dataset)
        nfe = statistics.fmean(out.nfe for out in outs)
        found |= {f"dopri5 tol {tolerance:g} score": value, f"dopri5 tol {tolerance:g} NFE": nfe}
        rows.append(f"| {tolerance:g} | {nfe:.1f} | {value:.4f} |")
    text = (
        f"dopri5 on the velocity of {name}, {samples:,} samples, {metric} against the data.\n\n"
        "| tolerance (rtol = atol) | NFE | score |\n|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    (run_dir / "adaptive_ode.md").write_text(text)
    path = run_dir / SCORES
    scores = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps(scores | found, indent=1))
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
