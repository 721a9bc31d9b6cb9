"""Sweeps: a grid of configs x gin bindings x seeds, each run a separate `flowmap train` process,
then every run's scores.json gathered into mean ± std per cell (`flowmap sweep`).

    flowmap sweep gin/experiments/checkerboard_lsd.gin gin/experiments/checkerboard_esd.gin \\
        --out runs/sweep --grid backbone.mlp.width 256 512 --seeds 0 1 2 --jobs 2

Cells are the product of the configs and every `--grid NAME VALUE ...` axis; each cell runs
once per seed (`train.seed`), in OUT/<cell>/seed<k>. Every run is one command
(`--print-commands` lists them, one a line, for a cluster launcher; run them anywhere, then
gather here with `--aggregate`). The sweep is resumable: a scored run (with `--no-eval`: one
trained to its last step) is skipped, and one with a complete checkpoint is continued with
`--resume`.

The sweep writes OUT/sweep.json (its command, and each run's cell, seed, directory and
command), OUT/summary.json (every run's scores.json, by cell and seed), OUT/summary.md (the
sweep's section of a report page, `flowmap_core.report`) and OUT/summary.png.
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
from collections.abc import Sequence
from pathlib import Path

import attrs

from flowmap_core.errors import FlowmapError
from flowmap_core.rundir import RunDir
from flowmap_core.scores import FLOW_MAP, Scores

FORMAT = 1


class SweepError(FlowmapError, ValueError):
    """A sweep that cannot be planned or read."""


@attrs.frozen
class Run:
    """One training process: the cell it belongs to, its seed, its config, bindings and directory."""

    cell: str
    seed: int
    config: str
    bindings: tuple[str, ...]
    run_dir: Path
    no_eval: bool = False
    extra_args: tuple[str, ...] = ()

    def command(self, resume: bool = False) -> list[str]:
        """The `flowmap train` command line of this run (`--resume` to continue it)."""
        argv = [sys.executable, "-m", "flowmap_core.cli", "train", self.config, "--run-dir", str(self.run_dir)]
        argv += ["--no-progress", *(["--no-eval"] if self.no_eval else []), *(["--resume"] if resume else [])]
        for binding in (*self.bindings, f"train.seed = {self.seed}"):
            argv += ["--gin", binding]
        return argv + list(self.extra_args)

    def status(self) -> str:
        """'done' (scored, or with --no-eval trained to its last step), 'partial' (a complete
        checkpoint to resume from) or 'new'."""
        run = RunDir(self.run_dir)
        if run.scored() or (self.no_eval and run.finished()):
            return "done"
        return "partial" if run.checkpoint_steps() else "new"


def slug(text: str) -> str:
    """A file-name-safe short form of a binding value or config name."""
    text = re.sub(r"^@|\(\)$", "", text.strip())
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def cells(configs: Sequence[str], grid: Sequence[Sequence[str]]) -> list[tuple[str, str, tuple[str, ...]]]:
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
        raise SweepError(f"two cells share a name ({names}); give the axes distinct last name parts")
    return out


def plan(
    configs: Sequence[str],
    grid: Sequence[Sequence[str]],
    seeds: Sequence[int],
    out: Path,
    bindings: Sequence[str] = (),
    no_eval: bool = False,
) -> list[Run]:
    """Every run of the sweep, cell by cell and seed by seed."""
    return [
        Run(cell, seed, config, (*bindings, *axes), Path(out) / cell / f"seed{seed}", no_eval)
        for cell, config, axes in cells(configs, grid)
        for seed in seeds
    ]


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
    """Run the given runs, `jobs` at a time, each with OMP_NUM_THREADS=`threads` under `nice`
    (a partial one resumed); stdout and stderr go to log_dir/<cell>-seed<k>.log. Returns each
    exit status."""
    log_dir.mkdir(parents=True, exist_ok=True)
    prefix = ["nice", "-n", str(nice)] if nice else []
    labels = {run: f"{run.cell} seed {run.seed}" for run in runs}
    logs = {run: log_dir / f"{run.cell}-seed{run.seed}.log" for run in runs}
    commands = [(labels[run], [*prefix, *run.command(resume=run.status() == "partial")], logs[run]) for run in runs]
    codes = run_at_once(commands, jobs, threads)
    return {run: codes[labels[run]] for run in runs}


# ------------------------------------------------------------------------- the summary


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (NaN for one value) and count of the finite values."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, 0
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else math.nan, len(finite)


@attrs.frozen
class Series:
    """A row of scores over seeds: per NFE (a flow map's k steps are k evaluations), each seed's value."""

    label: str
    values: dict[int, dict[int, float]]

    def stats(self, nfe: int) -> tuple[float, float, int]:
        return mean_std(list(self.values.get(nfe, {}).values()))


@attrs.frozen
class Summary:
    """Every run's scores of a sweep, by cell and seed, and what the report reads off them."""

    cells: dict[str, dict[int, Scores]]

    def to_json(self) -> dict:
        runs = {cell: {str(seed): s.to_json() for seed, s in seeds.items()} for cell, seeds in self.cells.items()}
        return {"format": FORMAT, "cells": runs}

    @classmethod
    def from_json(cls, data: dict) -> "Summary":
        if data.get("format") != FORMAT:
            raise SweepError(
                "a summary.json without a format predates scores.json: convert the sweep's runs with "
                "tools/convert_scores.py SWEEP_DIR, which writes it anew"
            )
        return cls(
            {
                cell: {int(seed): Scores.from_json(s) for seed, s in seeds.items()}
                for cell, seeds in data["cells"].items()
            }
        )

    @classmethod
    def read(cls, sweep_dir: Path) -> "Summary":
        path = Path(sweep_dir) / "summary.json"
        if not path.is_file():
            raise SweepError(f"no summary.json in {sweep_dir}: run `flowmap sweep` (or its --aggregate) there first")
        return cls.from_json(json.loads(path.read_text()))

    def check_comparable(self) -> None:
        """Refuse a comparison of cells whose flow-map scores were measured differently: their
        cards (`flowmap_core.cards`) must agree (tables written before cards are not checked)."""
        first = None
        for cell, seeds in self.cells.items():
            for seed, scores in seeds.items():
                table = scores.table(FLOW_MAP)
                if table is None or table.card is None:
                    continue
                if first is None:
                    first = (cell, seed, table.card)
                    continue
                differences = first[2].differences(table.card)
                if differences:
                    raise SweepError(
                        f"{cell} seed {seed} was scored differently from {first[0]} seed {first[1]} "
                        f"({'; '.join(differences)}), so their scores are not comparable: score them alike "
                        "(flowmap eval RUN_DIR --gin ...)"
                    )

    def _rows(self, cell: str, pick) -> dict[str, dict[int, dict[int, float]]]:
        """Label -> NFE -> seed -> value of the rows `pick(row)` of each seed's flow-map table."""
        out: dict[str, dict[int, dict[int, float]]] = {}
        for seed, scores in self.cells[cell].items():
            table = scores.table(FLOW_MAP)
            if table is None:
                continue
            headline = table.rows[0].weights if table.rows else None
            for row in table.rows:
                label = pick(row, headline)
                if label is None:
                    continue
                for count, value in zip(table.counts, row.values, strict=True):
                    out.setdefault(label, {}).setdefault(count, {})[seed] = value
        return out

    def headline(self, cell: str) -> Series | None:
        """The cell's headline: its first weights under the evaluation's sampler."""
        rows = self._rows(cell, lambda row, first: "" if row.weights == first and row.sampler == FLOW_MAP else None)
        return Series(cell, rows[""]) if "" in rows else None

    def baselines(self, cell: str) -> list[Series]:
        """The ODE baselines of the cell's headline weights, labelled `<cell>, <solver> ODE`."""

        def pick(row, first):
            ode = row.weights == first and row.sampler != FLOW_MAP and row.sampler.endswith(" ODE")
            return f"{cell}, {row.sampler}" if ode else None

        return [Series(label, values) for label, values in self._rows(cell, pick).items()]

    def noise_floor(self, cell: str) -> tuple[float, float, int]:
        tables = [s.table(FLOW_MAP) for s in self.cells[cell].values()]
        return mean_std([t.noise_floor for t in tables if t is not None])

    def budget(self, cell: str) -> tuple[tuple[float, float, int], tuple[float, float, int]]:
        """(mean, std, n) of the training steps and of the training seconds."""
        budgets = [s.budget for s in self.cells[cell].values() if s.budget is not None]
        return mean_std([b.steps for b in budgets]), mean_std([b.seconds for b in budgets])

    def tool_scores(self, cell: str) -> dict[str, list[float]]:
        """Each score a tool wrote, over the cell's seeds, by name."""
        out: dict[str, list[float]] = {}
        for scores in self.cells[cell].values():
            for name, value in scores.tool.items():
                out.setdefault(name, []).append(value)
        return dict(sorted(out.items()))


def summarise(runs: Sequence[Run]) -> tuple[Summary, list[str]]:
    """The summary of the runs' scores.json, cells by name and seeds in order, and the runs that
    have none (unfinished or failed)."""
    found: dict[str, dict[int, Scores]] = {}
    missing = []
    for run in runs:
        scores = RunDir(run.run_dir).read_scores()
        if scores is None or not (scores.tables or scores.tool):
            missing.append(f"{run.cell} seed {run.seed}")
            continue
        found.setdefault(run.cell, {})[run.seed] = scores
    cells = {cell: dict(sorted(found[cell].items())) for cell in sorted(found)}
    return Summary(cells), missing


def aggregate(runs: Sequence[Run], out: Path) -> str:
    """Write summary.json, summary.md and summary.png under `out`; returns the markdown."""
    from flowmap_core import figures, report

    summary, missing = summarise(runs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=1))
    figures.plot_sweep(summary, out / "summary.png")
    text = report.sweep_section(out, summary, plan=read_plan(out), missing=missing)
    (out / "summary.md").write_text(text)
    return text


def record_plan(runs: Sequence[Run], out: Path, argv: Sequence[str], tool: str = "flowmap sweep") -> None:
    """OUT/sweep.json: the command of the sweep (`tool` with its arguments) and every run's cell,
    seed, directory and command, so a report can say what produced each number."""
    plan = {
        "sweep": " ".join([tool, shlex.join(argv)]),
        "runs": [
            {
                "cell": run.cell,
                "seed": run.seed,
                "run_dir": str(run.run_dir),
                "command": shlex.join(["flowmap", *run.command()[3:]]),
            }
            for run in runs
        ],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(plan, indent=1))


def read_plan(out: Path) -> dict:
    """OUT/sweep.json ({} if the sweep has none)."""
    path = Path(out) / "sweep.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def planned_runs(out: Path) -> list[Run]:
    """The runs sweep.json lists (a run without `run_dir` is OUT/<cell>/seed<k>), as `Run`s whose
    config and bindings are the command's."""
    runs = []
    for entry in read_plan(out).get("runs", []):
        words = shlex.split(entry["command"])
        config = words[words.index("train") + 1]
        bindings = tuple(b for flag, b in zip(words, words[1:], strict=False) if flag == "--gin")
        run_dir = Path(entry.get("run_dir") or Path(out) / entry["cell"] / f"seed{entry['seed']}")
        seed_binding = f"train.seed = {entry['seed']}"
        kept = tuple(b for b in bindings if b != seed_binding)
        runs.append(Run(entry["cell"], int(entry["seed"]), config, kept, run_dir, "--no-eval" in words))
    return runs


# -------------------------------------------------------------------------------- the command


def check(args: argparse.Namespace) -> None:
    """Reject arguments no sweep can run with."""
    if any(len(axis) < 2 for axis in args.grid):
        raise SweepError("--grid takes a binding name and at least one value")
    if args.jobs < 1:
        raise SweepError(f"--jobs must be at least 1, got {args.jobs}")


def planned(args: argparse.Namespace) -> list[Run]:
    """The runs of the sweep the parsed arguments describe."""
    check(args)
    return plan(args.configs, args.grid, args.seeds, args.out, args.gin, args.no_eval)


def main(args: argparse.Namespace, argv: Sequence[str], tool: str = "flowmap sweep") -> int:
    """Run the sweep the parsed arguments describe (`argv`, as given, is recorded in sweep.json);
    returns 1 if a run failed."""
    runs = planned(args)
    pending = [run for run in runs if run.status() != "done"]
    if args.print_commands:
        for run in pending:
            print(shlex.join(run.command(resume=run.status() == "partial")))
        return 0
    failed = 0
    if not args.aggregate:
        print(f"sweep: {len(runs)} runs, {len(runs) - len(pending)} already done", file=sys.stderr)
        threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
        codes = launch(pending, args.jobs, threads, args.nice, args.out / "logs")
        failed = sum(code != 0 for code in codes.values())
    record_plan(runs, args.out, argv, tool)
    print(aggregate(runs, args.out))
    print(f"sweep: summary in {args.out / 'summary.md'}", file=sys.stderr)
    return 1 if failed else 0
