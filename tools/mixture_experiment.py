"""Flow-map error on a d-dimensional Gaussian mixture: train methods x dimensions x separations x
seeds (a `flowmap sweep`), score every run against the exact map, aggregate mean ± std.

    python tools/mixture_experiment.py --out runs/mixture --methods lsd esd psd_m fm \\
        --dimensions 2 8 32 --separations 4 --seeds 0 1 2 --jobs 2

Each run is gin/experiments/mixture_<method>.gin with `exact.mixture_means.dimension` and
`.separation` bound (one `flowmap train` command; `--print-commands` lists them for a
launcher, and `--aggregate` then scores and aggregates what they produced). A finished
run is then scored once against the exact map X* of its own mixture and interpolant
(exact.gaussian_mixture), `--jobs` runs at a time, writing into its directory:

- flow_map_error.json: E|X_{s,t}(x_s) - X*_{s,t}(x_s)|^2 on every pair s < t of `--times`
  (x_s on the interpolant's path), and the k-step sampling error E|x^k - X*_{0,1}(x0)|^2 for
  k = 1, 2, 4, 8, 16 against the exact transport of the same noise (with the flow map; for
  FM runs, with Euler and Heun ODE sampling at the same NFE);
- flow_map_error.png: the heat map of the first over the triangle;
- scores.json: the headline numbers as tool scores, which the sweep's summary aggregates per cell.

OUT/summary.md then holds mean ± std over seeds of every cell (sliced W2 from each run's scores,
the flow-map errors, the training cost), and OUT/error_vs_dimension.png the grid-mean map error
and the 1-step sampling error against dimension, one line per method and separation
(OUT/error_vs_separation.png, against separation, when the sweep has one dimension).
"""

import argparse
import json
import math
import shlex
import sys
from collections import defaultdict
from pathlib import Path

import torch

from flowmap_core import config, round_trip, sweep
from flowmap_core.rundir import RunDir

GIN = config.GIN_DIR / "experiments"
STEP_COUNTS = (1, 2, 4, 8, 16)


def score_run(run_dir: Path, times: tuple[float, ...], num_samples: int, seed: int = 0) -> dict[str, float]:
    """Score a finished mixture run against its exact map; write flow_map_error.{json,png} and
    scores.json into it; return the scores."""
    from flowmap_components.metrics.flow_map_error import flow_map_error_grid, plot_error_grid, sampling_error
    from flowmap_components.samplers.flow_map import FlowMapSampler
    from flowmap_components.samplers.ode import ODESampler
    from flowmap_core.run_sampler import RunSampler

    sampler = RunSampler.open(run_dir)
    trainer, X, weights = sampler.trainer, sampler.X, sampler.weights
    spec = trainer.spec
    exact = round_trip.exact_map(spec)
    if exact is None:
        raise SystemExit(f"mixture_experiment: {run_dir} does not train on dataset.gaussian_mixture_nd")
    common = {"dtype": trainer.dtype, "device": trainer.device, "seed": seed}
    grid = flow_map_error_grid(X, exact, times=times, num_samples=num_samples, **common)
    fm = spec.objective.registry_name == "flow_matching"
    samplers = {"euler": ODESampler(solver="euler"), "heun": ODESampler(solver="heun")} if fm else {}
    samplers = samplers or {"flow map": FlowMapSampler()}
    sampling = {}
    for name, sampler in samplers.items():
        per_step = getattr(sampler, "nfe_per_step", 1)
        counts = [k for k in STEP_COUNTS if k % per_step == 0]
        found = sampling_error(X, exact, sampler, step_counts=[k // per_step for k in counts], **common)
        sampling[name] = {str(nfe): found[nfe // per_step] for nfe in counts}
    detail = {
        "weights": weights,
        "step": trainer.step,
        "dimension": exact.data_shape[0],
        "grid": grid.to_dict(),
        "sampling_error": {
            name: {k: {"mean": m, "standard_error": se} for k, (m, se) in rows.items()}
            for name, rows in sampling.items()
        },
    }
    (run_dir / "flow_map_error.json").write_text(json.dumps(detail, indent=1))
    plot_error_grid(run_dir / "flow_map_error.png", grid, title=f"{run_dir.parent.name}\n{run_dir.name}")
    scores = {"map error (grid mean)": grid.mean()}
    scores |= {f"map error {s:g}->{t:g}": e for s, t, e, _ in grid.pairs() if (s, t) == (times[0], times[-1])}
    for name, rows in sampling.items():
        scores |= {f"{name} NFE {k} error": mean for k, (mean, _) in rows.items()}
    RunDir(run_dir).add_tool_scores(scores)
    return scores


def plot_errors(out: Path, summary: sweep.Summary, cells: dict[str, tuple[str, int, float]]) -> Path:
    """Grid-mean map error and 1-NFE sampling error, mean ± std over seeds, against dimension
    (one line per method and separation), or against separation when the sweep has one
    dimension and several separations. Writes and returns OUT/error_vs_<axis>.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dimensions = {dimension for _, dimension, _ in cells.values()}
    separations = {separation for _, _, separation in cells.values()}
    by_separation = len(dimensions) == 1 and len(separations) > 1
    axis = "separation" if by_separation else "dimension"
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    lines: dict[tuple[str, float], list[tuple[float, str]]] = defaultdict(list)
    for cell, (method, dimension, separation) in cells.items():
        if by_separation:
            lines[(method, dimension)].append((separation, cell))
        else:
            lines[(method, separation)].append((dimension, cell))
    for ax, pattern in zip(axes, ["map error (grid mean)", "NFE 1 error"], strict=True):
        for (method, fixed), members in sorted(lines.items()):
            x, mean, std = [], [], []
            for position, cell in sorted(members):
                scores = summary.tool_scores(cell) if cell in summary.cells else {}
                key = next((k for k in scores if k.endswith(pattern)), None)
                if key is None:
                    continue
                m, s, _ = sweep.mean_std(scores[key])
                x.append(position)
                mean.append(m)
                std.append(0.0 if math.isnan(s) else s)
            if x:
                label = f"{method}, d = {fixed:g}" if by_separation else f"{method}, separation {fixed:g}"
                ax.errorbar(x, mean, yerr=std, marker="o", label=label)
        if not by_separation:
            ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("separation of the means" if by_separation else "dimension d")
        ax.set_ylabel(pattern.replace("NFE 1 error", "1-step sampling error E|x^1 - X*_{0,1}(x0)|^2"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / f"error_vs_{axis}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def score_runs(run_dirs: list[Path], args: argparse.Namespace) -> int:
    """Score each run (score_run), `args.jobs` processes at once (one process: in this one);
    returns how many failed."""
    torch.set_num_threads(args.threads or 1)
    if args.jobs == 1:
        for run_dir in run_dirs:
            print(f"mixture_experiment: scoring {run_dir}", file=sys.stderr)
            score_run(run_dir, tuple(args.times), args.num_samples)
        return 0
    options = ["--out", str(args.out), "--times", *map(str, args.times), "--num-samples", str(args.num_samples)]
    commands = [
        (f"scoring {run_dir}", [sys.executable, __file__, *options, "--score-run", str(run_dir)], None)
        for run_dir in run_dirs
    ]
    codes = sweep.run_at_once(commands, args.jobs, args.threads or 1, tool="mixture_experiment")
    return sum(code != 0 for code in codes.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--methods", nargs="+", default=["lsd", "esd", "psd_m"], help="mixture_<method>.gin")
    parser.add_argument("--dimensions", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--separations", type=float, nargs="+", default=[4.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--gin", action="append", default=[], metavar="BINDING", help="a binding for every run")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--nice", type=int, default=0)
    parser.add_argument("--times", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    parser.add_argument("--num-samples", type=int, default=1024, help="points per (s, t) pair and for sampling")
    parser.add_argument("--print-commands", action="store_true")
    parser.add_argument("--aggregate", action="store_true", help="score and aggregate the runs already there")
    parser.add_argument("--score-run", type=Path, metavar="RUN_DIR", help="only score this one finished run")
    args = parser.parse_args(argv)
    if args.score_run:
        torch.set_num_threads(args.threads or 1)
        score_run(args.score_run, tuple(args.times), args.num_samples)
        return 0

    configs = [str(GIN / f"mixture_{method}.gin") for method in args.methods]
    missing = [c for c in configs if not Path(c).is_file()]
    if missing:
        parser.error(f"no such experiment: {', '.join(missing)}")
    grid = [
        ["exact.mixture_means.dimension", *map(str, args.dimensions)],
        ["exact.mixture_means.separation", *map(str, args.separations)],
    ]
    planned = sweep.plan(configs, grid, args.seeds, args.out, args.gin)
    if args.print_commands:
        for run in planned:
            if run.status() != "done":
                print(shlex.join(run.command(resume=run.status() == "partial")))
        return 0
    failed = 0
    if not args.aggregate:
        pending = [run for run in planned if run.status() != "done"]
        print(f"mixture_experiment: {len(planned)} runs, {len(planned) - len(pending)} already done", file=sys.stderr)
        threads = args.threads or 1
        codes = sweep.launch(pending, args.jobs, threads, args.nice, args.out / "logs")
        failed = sum(code != 0 for code in codes.values())
    cells = {}
    for (cell, _, _), (method, dimension, separation) in zip(
        sweep.cells(configs, grid),
        [(m, d, s) for m in args.methods for d in args.dimensions for s in args.separations],
        strict=True,
    ):
        cells[cell] = (method, dimension, separation)
    unscored = [r for r in planned if r.status() == "done" and not RunDir(r.run_dir).read_scores().tool]
    failed += score_runs([r.run_dir for r in unscored], args)
    sweep.record_plan(
        planned, args.out, argv if argv is not None else sys.argv[1:], tool="python tools/mixture_experiment.py"
    )
    print(sweep.aggregate(planned, args.out))
    figure = plot_errors(args.out, sweep.Summary.read(args.out), cells)
    print(f"mixture_experiment: {args.out / 'summary.md'}, {figure}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
