"""The accuracy-cost front of one config trained at several budgets.

    flowmap sweep gin/experiments/checkerboard_lsd.gin --grid train.steps 5000 10000 15000 \\
        --seeds 0 1 2 --out runs/front
    python tools/front.py runs/front [--cost-ratio R] [--fm-ms 24] [--budget-min 10] [--overhead-min 2]
                         [--nfe 1 4] [--targets 0.35 0.15]

SWEEP_DIR is a `flowmap sweep` directory whose cells train one config for different
numbers of steps. A cell's training cost is counted in flow-matching steps, its steps
times R, the config's step cost against the flow-matching step of the same batch and
network: the interleaved timing (flowmap_core.timing) of the sweep's config against
`--fm-config`, measured here unless `--cost-ratio` gives it. Counted so, the front is the
same on any machine; the minutes column converts it at `--fm-ms` per flow-matching step
(the machine a time target names), and a cell fits the budget when those minutes plus
`--overhead-min` (install and evaluation) are within `--budget-min`.

Writes SWEEP_DIR/front.md and front.png: the headline score at each `--nfe` (flow-map
steps), mean ± sample std over seeds, against cost, the targets, which cells are on the
front (no cell at most as costly is better in every column) and which meet every target.
"""

import argparse
import math
from pathlib import Path

import attrs

from flowmap_core import report, sweep, timing


@attrs.frozen
class Point:
    """One cell: its training steps, cost in flow-matching steps, and per NFE the
    (mean, std, n) of its seeds' headline scores."""

    cell: str
    steps: float
    cost: float
    scores: dict[int, tuple[float, float, int]]


def points(summary: sweep.Summary, nfe: list[int], cost_ratio: float) -> list[Point]:
    """The cells of a sweep summary that have training steps and a score at every NFE, by cost."""
    found = []
    for cell in summary.cells:
        steps = summary.budget(cell)[0][0]
        headline = summary.headline(cell)
        if headline is None or not math.isfinite(steps) or any(k not in headline.values for k in nfe):
            continue
        found.append(Point(cell, steps, steps * cost_ratio, {k: headline.stats(k) for k in nfe}))
    return sorted(found, key=lambda p: p.cost)


def on_front(point: Point, others: list[Point]) -> bool:
    """No other point at most as costly is at least as good in every column and better in one."""
    for other in others:
        if other is point or other.cost > point.cost:
            continue
        means = [(other.scores[c][0], point.scores[c][0]) for c in point.scores]
        if all(o <= p for o, p in means) and any(o < p for o, p in means):
            return False
    return True


def table(front: list[Point], targets: dict[int, float], fm_ms: float, budget_min: float, overhead_min: float) -> str:
    """The front as a table, each cell against the targets and the time budget."""
    columns = [report.column_name(k, "steps") for k in targets]
    head = ["cell", "steps", "cost (FM steps)", f"training min at {fm_ms:g} ms / FM step", "n", *columns]
    head += ["on the front", "meets the targets", f"fits {budget_min:g} min"]
    rows = []
    for p in front:
        minutes = p.cost * fm_ms / 60_000
        meets = all(round(p.scores[k][0], 4) <= targets[k] for k in targets)  # as the reports print KL
        n = min(s[2] for s in p.scores.values())
        cells = [f"{m:.3f} ± {s:.3f}" if math.isfinite(s) else f"{m:.3f}" for m, s, _ in p.scores.values()]
        verdicts = [on_front(p, front), meets, minutes + overhead_min <= budget_min]
        rows.append([p.cell, f"{p.steps:,.0f}", f"{p.cost:,.0f}", f"{minutes:.1f}", n, *cells])
        rows[-1] += ["yes" if v else "no" for v in verdicts]
    targets_text = ", ".join(f"{report.column_name(k, 'steps')} ≤ {v:g}" for k, v in targets.items())
    return (
        report.table(head, rows)
        + f"\n\nTargets: {targets_text} (the mean over seeds). Fits: training minutes plus {overhead_min:g} min of "
        + f"install and evaluation within {budget_min:g} min."
    )


def plot(
    front: list[Point], targets: dict[int, float], fm_ms: float, budget_min: float, overhead_min: float, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(targets), figsize=(4.5 * len(targets), 3.8), squeeze=False)
    budget_cost = (budget_min - overhead_min) * 60_000 / fm_ms
    for ax, (column, target) in zip(axes[0], targets.items(), strict=True):
        costs = [p.cost for p in front]
        means = [p.scores[column][0] for p in front]
        stds = [0.0 if math.isnan(p.scores[column][1]) else p.scores[column][1] for p in front]
        ax.errorbar(costs, means, yerr=stds, marker="o", capsize=3)
        ax.axhline(target, color="tab:red", linestyle="--", linewidth=0.8, label=f"target {target:g}")
        ax.axvline(budget_cost, color="gray", linestyle=":", linewidth=0.8, label=f"{budget_min:g} min budget")
        ax.set_xlabel(f"training cost (flow-matching steps; {fm_ms:g} ms each on the budget's machine)")
        ax.set_ylabel(f"KL at {report.column_name(column, 'steps')} (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sweep_config(sweep_dir: Path) -> tuple[str, list[str]]:
    """The sweep's config file and its bindings other than the step count, from sweep.json."""
    runs = sweep.planned_runs(sweep_dir)
    if not runs:
        raise SystemExit(f"front: no runs in {sweep_dir / 'sweep.json'}")
    bindings = [b for b in runs[0].bindings if not b.replace(" ", "").startswith("train.steps=")]
    return runs[0].config, bindings


def measure_cost_ratio(config_file: str, bindings: list[str], fm_config: str, steps: int, rounds: int) -> float:
    """The config's step time over the flow-matching step's, timed in interleaved rounds."""
    trainers = {"fm": timing.build(fm_config, []), "config": timing.build(config_file, bindings)}
    times = timing.median_step_times({k: timing.step_of(t) for k, t in trainers.items()}, steps, rounds)
    return times["config"] / times["fm"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="a `flowmap sweep` directory over train.steps")
    parser.add_argument("--cost-ratio", type=float, help="step cost in FM steps (default: measure it)")
    parser.add_argument("--fm-config", default="experiments/checkerboard_fm.gin", help="the flow-matching step")
    parser.add_argument("--fm-ms", type=float, default=24.0, help="ms per FM step on the budget's machine")
    parser.add_argument("--budget-min", type=float, default=10.0)
    parser.add_argument("--overhead-min", type=float, default=2.0, help="install and evaluation, minutes")
    parser.add_argument("--nfe", type=int, nargs="+", default=[1, 4], help="flow-map step counts to compare")
    parser.add_argument("--targets", nargs="+", type=float, default=[0.35, 0.15])
    parser.add_argument("--bench-steps", type=int, default=40, help="steps per timing round when measuring")
    parser.add_argument("--bench-rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if len(args.nfe) != len(args.targets):
        parser.error(f"{len(args.nfe)} step counts but {len(args.targets)} targets")
    if not (args.sweep / "summary.json").is_file():
        parser.error(f"no summary.json in {args.sweep}: run `flowmap sweep` (or its --aggregate) there first")
    if args.cost_ratio is not None and args.cost_ratio <= 0:
        parser.error(f"--cost-ratio must be > 0, got {args.cost_ratio}")
    ratio = args.cost_ratio
    if ratio is None:
        config_file, bindings = sweep_config(args.sweep)
        ratio = measure_cost_ratio(config_file, bindings, args.fm_config, args.bench_steps, args.bench_rounds)
    front = points(sweep.Summary.read(args.sweep), args.nfe, ratio)
    if not front:
        parser.error(f"no cell of {args.sweep} has training steps and scores at {args.nfe} steps")
    targets = dict(zip(args.nfe, args.targets, strict=True))
    source = "given" if args.cost_ratio is not None else f"measured against {args.fm_config}"
    text = (
        f"# Accuracy against training cost: {args.sweep}\n\n"
        f"One step of the sweep's config costs {ratio:.2f} flow-matching steps ({source}).\n\n"
        + table(front, targets, args.fm_ms, args.budget_min, args.overhead_min)
        + "\n\n![front](front.png)\n"
    )
    (args.sweep / "front.md").write_text(text)
    plot(front, targets, args.fm_ms, args.budget_min, args.overhead_min, args.sweep / "front.png")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
