"""Run a grid of configs x gin bindings x seeds as separate `flowmap train` processes, then
aggregate every run's scores into mean ± std per cell.

    python tools/sweep.py gin/experiments/checkerboard_lsd.gin gin/experiments/checkerboard_esd.gin \\
        --out runs/sweep --grid backbone.mlp.width 256 512 --seeds 0 1 2 --jobs 2

Cells are the product of the configs and every `--grid NAME VALUE ...` axis; each cell runs
once per seed (`train.seed`), in OUT/<cell>/seed<k>. Every run is one command
(`--print-commands` lists them, one a line, for a cluster launcher; run them anywhere, then
aggregate here with `--aggregate`). The sweep is resumable: a run whose directory holds
report.md (with `--no-eval`: a complete checkpoint at its last step) is skipped, and one
with an earlier complete checkpoint is continued with `--resume`.

Aggregation reads each run's score table from report.md (the first table whose header is
`| weights ...`: one row per weights or baseline sampler, one column per step count or NFE)
and the flat `{"name": number}` object of scores.json if a tool wrote one (e.g.
tools/mixture_experiment.py), and the training cost (steps and seconds, from metrics.jsonl),
so that methods can be compared at equal wall time. It writes OUT/summary.md (mean ± std
over seeds, the sample standard deviation), OUT/summary.json (every seed's value) and
OUT/summary.png (each cell's headline row and ODE baseline rows against step count, with ±1 std
bars, each cell's mean training time in its label).
"""

import argparse
import itertools
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPORT = "report.md"
SCORES = "scores.json"


@dataclass(frozen=True)
class Run:
    """One training process: the cell it belongs to, its seed, its config, bindings and directory."""

    cell: str
    seed: int
    config: str
    bindings: tuple[str, ...]
    run_dir: Path
    no_eval: bool = False
    extra_args: tuple[str, ...] = field(default=())

    def command(self, resume: bool = False) -> list[str]:
        """The `flowmap train` command line of this run (`--resume` to continue it)."""
        argv = [sys.executable, "-m", "flowmap_core.cli", "train", self.config, "--run-dir", str(self.run_dir)]
        argv += ["--no-progress", *(["--no-eval"] if self.no_eval else []), *(["--resume"] if resume else [])]
        for binding in (*self.bindings, f"train.seed = {self.seed}"):
            argv += ["--gin", binding]
        return argv + list(self.extra_args)


def slug(text: str) -> str:
    """A file-name-safe short form of a binding value or config name."""
    text = re.sub(r"^@|\(\)$", "", text.strip())
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def cells(configs: list[str], grid: list[list[str]]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(cell name, config, bindings) for every combination of a config and one value per axis."""
    axes = [[(name, value) for value in values] for name, *values in grid]
    out = []
    for config in configs:
        for combo in itertools.product(*axes):
            parts = [slug(Path(config).stem)] if len(configs) > 1 else []
            parts += [f"{slug(name.split('.')[-1])}={slug(value)}" for name, value in combo]
            out.append(("-".join(parts) or slug(Path(config).stem), config, tuple(f"{n} = {v}" for n, v in combo)))
    names = [name for name, _, _ in out]
    if len(set(names)) != len(names):
        raise SystemExit(f"sweep: two cells share a name ({names}); give the axes distinct last name parts")
    return out


def final_step(run_dir: Path) -> int | None:
    """`train.steps` of a run, from the config.gin it was started with."""
    config_file = run_dir / "config.gin"
    if not config_file.is_file():
        return None
    found = re.findall(r"^train\.steps\s*=\s*(\d+)\s*$", config_file.read_text(), re.M)
    return int(found[-1]) if found else None


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the run's complete checkpoints, oldest first."""
    from flowmap_core.checkpoint import complete_checkpoints

    return [int(path.name.removeprefix("step_")) for path in complete_checkpoints(run_dir / "checkpoints")]


def status(run: Run) -> str:
    """'done' (report.md, or the last step's checkpoint with --no-eval), 'partial' (a complete
    checkpoint to resume from) or 'new'."""
    steps = checkpoint_steps(run.run_dir)
    if (run.run_dir / REPORT).is_file() or (run.no_eval and steps and steps[-1] == final_step(run.run_dir)):
        return "done"
    return "partial" if steps else "new"


def run_at_once(
    commands: list[tuple[str, list[str], Path | None]], jobs: int, threads: int, tool: str = "sweep"
) -> dict[str, int]:
    """Run (label, argv, log file) commands `jobs` at a time, each with OMP_NUM_THREADS=`threads`,
    its stdout and stderr in its log file (None: this console); returns each label's exit status."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    queue = list(commands)
    active: dict[subprocess.Popen, str] = {}
    codes: dict[str, int] = {}
    while queue or active:
        while queue and len(active) < jobs:
            label, argv, log_path = queue.pop(0)
            log = open(log_path, "w") if log_path else None  # noqa: SIM115 (closed once the child has it)
            print(f"{tool}: start {label}", file=sys.stderr)
            active[subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT if log else None, env=env)] = label
            if log:
                log.close()
        for process in [p for p in active if p.poll() is not None]:
            label = active.pop(process)
            codes[label] = process.returncode
            state = "done" if process.returncode == 0 else f"FAILED (exit {process.returncode}, see the log)"
            print(f"{tool}: {state}: {label}", file=sys.stderr)
        time.sleep(0.2)
    return codes


def launch(runs: list[Run], jobs: int, threads: int, nice: int, log_dir: Path) -> dict[Run, int]:
    """Run the not-done runs, `jobs` at a time, each with OMP_NUM_THREADS=`threads` under
    `nice`; stdout and stderr go to log_dir/<cell>-seed<k>.log. Returns each exit status."""
    log_dir.mkdir(parents=True, exist_ok=True)
    prefix = ["nice", "-n", str(nice)] if nice else []
    labels = {run: f"{run.cell} seed {run.seed}" for run in runs}
    logs = {run: log_dir / f"{run.cell}-seed{run.seed}.log" for run in runs}
    commands = [(labels[run], [*prefix, *run.command(resume=status(run) == "partial")], logs[run]) for run in runs]
    codes = run_at_once(commands, jobs, threads)
    return {run: codes[labels[run]] for run in runs}


# ------------------------------------------------------------------------- aggregation


def read_report_table(path: Path) -> dict[str, dict[str, float]]:
    """row -> column -> value of a report.md's score tables: the first `| weights ...` table,
    rows named by its first column, and a guided run's first `| guidance w ...` table, rows
    named 'guidance w = <its first column>'. Columns are the header's names ('1 step',
    'NFE 4', ...); '—' (not scored) is NaN; the noise-floor rows are kept under their own names."""
    lines = path.read_text().splitlines()
    table: dict[str, dict[str, float]] = {}
    prefixes = {"weights": "", "guidance w": "guidance w = "}
    for start, line in enumerate(lines):
        head = re.match(r"^\|\s*(weights|guidance w)\b", line)
        if not head or head[1] not in prefixes:
            continue
        prefix = prefixes.pop(head[1])
        header = [cell.strip() for cell in line.strip().strip("|").split("|")]
        for row in lines[start + 2 :]:
            if not row.startswith("|"):
                break
            values = [cell.strip() for cell in row.strip().strip("|").split("|")]
            if len(values) != len(header):
                continue
            table[prefix + values[0]] = {col: _number(v) for col, v in zip(header[1:], values[1:], strict=True)}
    return table


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def run_scores(run_dir: Path) -> dict[str, dict[str, float]]:
    """A finished run's scores: its report table, scores.json under the row 'scores', and its
    training cost (steps, seconds: the last line of metrics.jsonl) under 'training'."""
    table = read_report_table(run_dir / REPORT) if (run_dir / REPORT).is_file() else {}
    if table and (run_dir / "metrics.jsonl").is_file():
        lines = (run_dir / "metrics.jsonl").read_text().strip().splitlines()
        last = json.loads(lines[-1]) if lines else {}
        if "elapsed_s" in last:
            table["training"] = {"steps": float(last["step"]), "seconds": float(last["elapsed_s"])}
    if (run_dir / SCORES).is_file():
        extra = json.loads((run_dir / SCORES).read_text())
        table["scores"] = {str(k): float(v) for k, v in extra.items() if isinstance(v, int | float)}
    return table


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for one value) of the finite values."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else math.nan


def fmt(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.4f} ± {std:.4f}" if math.isfinite(std) else f"{mean:.4f} ± —"


def aggregate(runs: list[Run], out: Path) -> str:
    """Write summary.md, summary.json and summary.png under `out`; returns the markdown."""
    # cell -> row -> column -> seed -> value
    data: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    missing = []
    for run in runs:
        scores = run_scores(run.run_dir)
        if not scores:
            missing.append(f"{run.cell} seed {run.seed}")
        for row, columns in scores.items():
            for column, value in columns.items():
                data[run.cell][row][column][run.seed] = value
    lines = ["# Sweep summary", "", "Mean ± sample standard deviation over seeds; `n` is the number of seeds.", ""]
    kinds: dict[tuple[str, ...], list[tuple[str, str]]] = defaultdict(list)
    for cell, rows in data.items():
        for row, columns in rows.items():
            kind = "noise floor" if row.startswith("true samples") else row
            kinds[(kind, *columns)].append((cell, row))
    for (kind, *columns), members in kinds.items():
        lines += [f"## {kind}", "", "| cell | n | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
        for cell, row in members:
            seeds = sorted({s for column in columns for s in data[cell][row][column]})
            values = [fmt(*mean_std(list(data[cell][row][column].values()))) for column in columns]
            lines.append(f"| {cell} | {len(seeds)} | " + " | ".join(values) + " |")
        lines.append("")
    if missing:
        lines += ["Runs without scores (not finished or failed): " + ", ".join(missing), ""]
    text = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(data, indent=1, sort_keys=True))
    plot(data, out / "summary.png")
    return text


def _count(column: str) -> int | None:
    """The step count or NFE a column names ('4 steps', 'NFE 4'), else None."""
    found = re.fullmatch(r"(\d+) steps?|NFE (\d+)", column)
    return int(found[1] or found[2]) if found else None


def plot(data: dict, path: Path) -> list[str]:
    """Each cell's headline row (its first) and that row's ODE baselines ('<weights>, heun ODE')
    against step count/NFE, mean ± 1 std over seeds, each cell labelled with its mean
    training time; a point for each pair '<name> NFE', '<name> score' of a tool's scores (the
    adaptive solver's, tools/adaptive_ode.py); the noise floor dashed; a log score axis when
    every score is positive. Returns the labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    labels = []
    for cell, rows in data.items():
        seconds = list(rows.get("training", {}).get("seconds", {}).values())
        trained = f" ({statistics.fmean(seconds) / 60:.1f} min training)" if seconds else ""
        headline = next(iter(rows), "")
        for index, (row, columns) in enumerate(rows.items()):
            counted = sorted((_count(c), c) for c in columns if _count(c) is not None)
            baseline = row.startswith(f"{headline}, ") and row.endswith(" ODE")
            if not counted or (index > 0 and not row.startswith("true samples") and not baseline):
                continue
            stats = [mean_std(list(columns[c].values())) for _, c in counted]
            x = [k for k, _ in counted]
            if row.startswith("true samples"):
                ax.plot(x, [m for m, _ in stats], linestyle="--", color="gray", linewidth=0.8)
                continue
            label = f"{cell}, {row.split(', ')[-1]}" if baseline else cell + trained
            ax.errorbar(
                x, [m for m, _ in stats], yerr=[0 if math.isnan(s) else s for _, s in stats], marker="o", label=label
            )
            labels.append(label)
        scores = rows.get("scores", {})
        for name in [key.removesuffix(" NFE") for key in scores if key.endswith(" NFE")]:
            if f"{name} score" not in scores:
                continue
            nfe, _ = mean_std(list(scores[f"{name} NFE"].values()))
            value, spread = mean_std(list(scores[f"{name} score"].values()))
            label = f"{cell}, {name}"
            ax.errorbar([nfe], [value], yerr=[0 if math.isnan(spread) else spread], marker="s", label=label)
            labels.append(label)
    if labels:
        ax.set_xscale("log", base=2)
        if not any(y <= 0 for line in ax.get_lines() for y in line.get_ydata()):
            ax.set_yscale("log")
        ax.set_xlabel("flow-map steps (or NFE)")
        ax.set_ylabel("score (dashed: noise floor)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return labels


# -------------------------------------------------------------------------------- main


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", help="gin files (one axis of the grid)")
    parser.add_argument("--out", type=Path, required=True, help="sweep directory: OUT/<cell>/seed<k>, summary.*")
    parser.add_argument(
        "--grid", nargs="+", action="append", default=[], metavar=("NAME", "VALUE"), help="an axis: binding and values"
    )
    parser.add_argument("--gin", action="append", default=[], metavar="BINDING", help="a binding for every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="processes at once")
    parser.add_argument("--threads", type=int, default=None, help="OMP threads per process (default: cores / jobs)")
    parser.add_argument("--nice", type=int, default=0, help="run each process under nice -n NICE")
    parser.add_argument("--no-eval", action="store_true", help="train only (done = last checkpoint written)")
    parser.add_argument("--print-commands", action="store_true", help="print each pending run's command and exit")
    parser.add_argument("--aggregate", action="store_true", help="only aggregate the runs already there")
    args = parser.parse_args(argv)
    if any(len(axis) < 2 for axis in args.grid):
        parser.error("--grid takes a binding name and at least one value")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    return args


def plan(args: argparse.Namespace) -> list[Run]:
    """Every run of the sweep, cell by cell and seed by seed."""
    return [
        Run(cell, seed, config, (*args.gin, *bindings), args.out / cell / f"seed{seed}", args.no_eval)
        for cell, config, bindings in cells(args.configs, args.grid)
        for seed in args.seeds
    ]


def record_plan(runs: list[Run], out: Path, argv: list[str], tool: str = "tools/sweep.py") -> None:
    """OUT/sweep.json: the command of the sweep (`tool` with its arguments) and every run's cell,
    seed and command, so a report can say what produced each number (`tools/report.py`)."""
    plan = {
        "sweep": shlex.join(["python", tool, *argv]),
        "runs": [
            {"cell": run.cell, "seed": run.seed, "command": shlex.join(["flowmap", *run.command()[3:]])} for run in runs
        ],
    }
    (out / "sweep.json").write_text(json.dumps(plan, indent=1))


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    runs = plan(args)
    pending = [run for run in runs if status(run) != "done"]
    if args.print_commands:
        for run in pending:
            print(shlex.join(run.command(resume=status(run) == "partial")))
        return 0
    failed = 0
    if not args.aggregate:
        print(f"sweep: {len(runs)} runs, {len(runs) - len(pending)} already done", file=sys.stderr)
        threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
        codes = launch(pending, args.jobs, threads, args.nice, args.out / "logs")
        failed = sum(code != 0 for code in codes.values())
    print(aggregate(runs, args.out))
    record_plan(runs, args.out, argv if argv is not None else sys.argv[1:])
    print(f"sweep: summary in {args.out / 'summary.md'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
