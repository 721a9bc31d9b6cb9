"""The accuracy-cost front of one config trained at several budgets.

    python tools/sweep.py gin/experiments/checkerboard_lsd.gin --grid train.steps 5000 10000 15000 \\
        --seeds 0 1 2 --out runs/front
    python tools/front.py runs/front [--cost-ratio R] [--fm-ms 24] [--budget-min 10] [--overhead-min 2]
                         [--columns '1 step' '4 steps'] [--targets 0.35 0.15]

SWEEP_DIR is a `tools/sweep.py` directory whose cells train one config for different
numbers of steps. A cell's training cost is counted in flow-matching steps, its steps
times R, the config's step cost against the flow-matching step of the same batch and
network: `bench_step.py`'s interleaved timing of the sweep's config against
`--fm-config`, measured here unless `--cost-ratio` gives it. Counted so, the front is the
same on any machine; the minutes column converts it at `--fm-ms` per flow-matching step
(the machine a time target names), and a cell fits the budget when those minutes plus
`--overhead-min` (install and evaluation) are within `--budget-min`.

Writes SWEEP_DIR/front.md and front.png: each column's mean ± sample std over seeds
against cost, the targets, which cells are on the front (no cell at most as costly is
better in every column) and which meet every target.
"""

import argparse
import json
import math
import shlex
from pathlib import Path

import attrs
from report import headline_row, stats


@attrs.frozen
class Point:
    """One cell: its training steps, cost in flow-matching steps, and per column the
    (mean, std, n) of its seeds' headline scores."""

    cell: str
    steps: float
    cost: float
    scores: dict[str, tuple[float, float, int]]


def points(summary: dict, columns: list[str], cost_ratio: float) -> list[Point]:
    """The cells of a sweep summary that have training steps and every column, by cost."""
    found = []
    for cell, rows in summary.items():
        steps = stats(rows.get("training", {}).get("steps", {}))[0]
        name = headline_row(rows)
        if name is None or not math.isfinite(steps) or any(c not in rows[name] for c in columns):
            continue
        found.append(Point(cell, steps, steps * cost_ratio, {c: stats(rows[name][c]) for c in columns}))
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


def table(front: list[Point], targets: dict[str, float], fm_ms: float, budget_min: float, overhead_min: float) -> str:
    columns = list(targets)
    lines = [
        "| cell | steps | cost (FM steps) | training min at "
        f"{fm_ms:g} ms / FM step | n | " + " | ".join(columns) + " | on the front | meets the targets | fits "
        f"{budget_min:g} min |",
        "|---" * (len(columns) + 8) + "|",
    ]
    for p in front:
        minutes = p.cost * fm_ms / 60_000
        meets = all(round(p.scores[c][0], 4) <= targets[c] for c in columns)  # as the reports print KL
        n = min(s[2] for s in p.scores.values())
        cells = [f"{m:.3f} ± {s:.3f}" if math.isfinite(s) else f"{m:.3f}" for m, s, _ in p.scores.values()]
        lines.append(
            f"| {p.cell} | {p.steps:,.0f} | {p.cost:,.0f} | {minutes:.1f} | {n} | "
            + " | ".join(cells)
            + f" | {'yes' if on_front(p, front) else 'no'} | {'yes' if meets else 'no'} | "
            + f"{'yes' if minutes + overhead_min <= budget_min else 'no'} |"
        )
    targets_text = ", ".join(f"{c} ≤ {v:g}" for c, v in targets.items())
    lines += [
        "",
        f"Targets: {targets_text} (the mean over seeds). Fits: training minutes plus {overhead_min:g} min of "
        f"install and evaluation within {budget_min:g} min.",
    ]
    return "\n".join(lines)


def plot(
    front: list[Point], targets: dict[str, float], fm_ms: float, budget_min: float, overhead_min: float, path: Path
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
        ax.set_ylabel(f"KL at {column} (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sweep_config(sweep_dir: Path) -> tuple[str, list[str]]:
    """The sweep's config file and its bindings other than the step count and seed, from
    the first run's command in sweep.json."""
    plan = json.loads((sweep_dir / "sweep.json").read_text())
    words = shlex.split(plan["runs"][0]["command"])
    config_file = words[words.index("train") + 1]
    bindings = [b for flag, b in zip(words, words[1:], strict=False) if flag == "--gin"]
    return config_file, [b for b in bindings if not b.replace(" ", "").startswith(("train.steps=", "train.seed="))]


def measure_cost_ratio(config_file: str, bindings: list[str], fm_config: str, steps: int, rounds: int) -> float:
    """The config's step time over the flow-matching step's, timed in interleaved rounds."""
    import bench_step

    trainers = {"fm": bench_step.build(fm_config, []), "config": bench_step.build(config_file, bindings)}
    times = bench_step.median_step_times({k: bench_step.step_of(t) for k, t in trainers.items()}, steps, rounds)
    return times["config"] / times["fm"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="a tools/sweep.py directory over train.steps")
    parser.add_argument("--cost-ratio", type=float, help="step cost in FM steps (default: measure it)")
    parser.add_argument("--fm-config", default="experiments/checkerboard_fm.gin", help="the flow-matching step")
    parser.add_argument("--fm-ms", type=float, default=24.0, help="ms per FM step on the budget's machine")
    parser.add_argument("--budget-min", type=float, default=10.0)
    parser.add_argument("--overhead-min", type=float, default=2.0, help="install and evaluation, minutes")
    parser.add_argument("--columns", nargs="+", default=["1 step", "4 steps"])
    parser.add_argument("--targets", nargs="+", type=float, default=[0.35, 0.15])
    parser.add_argument("--bench-steps", type=int, default=40, help="steps per timing round when measuring")
    parser.add_argument("--bench-rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if len(args.columns) != len(args.targets):
        parser.error(f"{len(args.columns)} columns but {len(args.targets)} targets")
    if not (args.sweep / "summary.json").is_file():
        parser.error(f"no summary.json in {args.sweep}: run tools/sweep.py (or its --aggregate) there first")
    if args.cost_ratio is not None and args.cost_ratio <= 0:
        parser.error(f"--cost-ratio must be > 0, got {args.cost_ratio}")
    ratio = args.cost_ratio
    if ratio is None:
        config_file, bindings = sweep_config(args.sweep)
        ratio = measure_cost_ratio(config_file, bindings, args.fm_config, args.bench_steps, args.bench_rounds)
    summary = json.loads((args.sweep / "summary.json").read_text())
    front = points(summary, args.columns, ratio)
    if not front:
        parser.error(f"no cell of {args.sweep} has training steps and the columns {args.columns}")
    targets = dict(zip(args.columns, args.targets, strict=True))
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
