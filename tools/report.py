"""Build a results page from sweep directories: each table with the commands and budget that
produced it, and plainly where each configuration lost.

    python tools/report.py SWEEP_DIR [SWEEP_DIR ...] --out docs/sweeps.md [--title TITLE]

Each SWEEP_DIR is what `tools/sweep.py` writes: `summary.json` (every seed's score per cell,
row and column), `sweep.json` (the sweep's command line and every run's command) and
`summary.png`. For each, the page gets a section with the sweep's command, the budget (training
steps and minutes per cell, from the runs' `metrics.jsonl`), the headline table (the first
weights row of each run's report: mean ± sample standard deviation over seeds, and n; a flow
map's k steps and an ODE's k evaluations share the column NFE k, and each ODE baseline row of
a run is a row `<cell>, <solver> ODE`), the noise floor, the table of scores a tool wrote
(scores.json: a mixture run's flow-map errors), every figure of the sweep directory, and for
each grid point (cells that differ only in their config) a
line per column naming the best and those behind it by more than their standard deviations
combined. Scores are read as lower-is-better (KL, Fréchet distance, flow-map error). Cells
with fewer than 3 seeds are named, since one seed is not a result.
"""

import argparse
import json
import math
import re
import shutil
import statistics
from pathlib import Path

FLOOR = "true samples (noise floor)"
NOT_SCORES = {"training", "scores", FLOOR}


def column_order(name: str) -> tuple[int, str]:
    """'1 step', '2 steps', 'NFE 4' sort by their number."""
    number = re.search(r"\d+", name)
    return (int(number.group()) if number else 10**9, name)


def nfe(column: str) -> str:
    """'4 steps' and 'NFE 4' are one column, 'NFE 4': a flow map's k steps cost k evaluations."""
    number = re.fullmatch(r"(\d+) steps?|NFE (\d+)", column)
    return f"NFE {number.group(1) or number.group(2)}" if number else column


def by_nfe(row: dict, columns: list[str]) -> dict[str, tuple[float, float, int]]:
    """A summary row's statistics per column, its step-count columns named by NFE."""
    named = {nfe(column): per_seed for column, per_seed in row.items()}
    return {column: stats(named.get(column, {})) for column in columns}


def stats(per_seed: dict[str, float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (NaN for one seed) and count of the finite values."""
    values = [v for v in per_seed.values() if isinstance(v, int | float) and math.isfinite(v)]
    if not values:
        return math.nan, math.nan, 0
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan, len(values)


def cell_text(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.4g} ± {std:.2g}" if math.isfinite(std) else f"{mean:.4g}"


def headline_row(cell: dict) -> str | None:
    """The first weights row of a cell (its reports' headline), skipping baselines ('w, sampler')
    and a guided run's per-w rows ('guidance w = 1')."""
    return next(
        (row for row in cell if row not in NOT_SCORES and ", " not in row and not row.startswith("guidance w = ")),
        None,
    )


def section(sweep_dir: Path, figures_dir: Path, page_dir: Path) -> str:
    """The markdown section of one sweep directory; copies its figure into `figures_dir`."""
    summary = json.loads((sweep_dir / "summary.json").read_text())
    plan_file = sweep_dir / "sweep.json"
    plan = json.loads(plan_file.read_text()) if plan_file.is_file() else {}
    lines = [f"## {sweep_dir.name}", ""]
    if plan:
        lines += [f"Produced by `{plan['sweep']}`; each run is one command, e.g.", ""]
        lines += ["```", plan["runs"][0]["command"], "```", ""] if plan.get("runs") else []
    rows = {cell: headline_row(data) for cell, data in summary.items()}
    columns = sorted({nfe(c) for cell, row in rows.items() if row for c in summary[cell][row]}, key=column_order)
    table = {cell: by_nfe(summary[cell][row], columns) for cell, row in rows.items() if row}
    baselines = {
        f"{cell}, {row.split(', ')[-1]}": by_nfe(summary[cell][row], columns)
        for cell, headline in rows.items()
        for row in summary[cell]
        if headline and row.startswith(f"{headline}, ") and row.endswith(" ODE")
    }
    lines += ["| cell | n | training steps | minutes | " + " | ".join(columns) + " |"]
    lines += ["|---" * (len(columns) + 4) + "|"]
    for cell, scores in (table | baselines).items():
        training = summary[cell].get("training", {}) if cell in summary else {}
        steps, minutes = stats(training.get("steps", {})), stats(training.get("seconds", {}))
        n = max((count for _, _, count in scores.values()), default=0)
        budget = [f"{steps[0]:,.0f}" if math.isfinite(steps[0]) else "—"]
        budget += [cell_text(minutes[0] / 60, minutes[1] / 60)]
        lines += [f"| {cell} | {n} | " + " | ".join(budget + [cell_text(*scores[c][:2]) for c in columns]) + " |"]
    floors = [stats(summary[cell][FLOOR].get(columns[0], {})) for cell in table if FLOOR in summary[cell]]
    if floors and columns:
        lines += ["", f"Noise floor (true samples against the data): {cell_text(*floors[0][:2])}."]
    lines += ["", "A flow map's k steps are k network evaluations (NFE k)."] if columns else []
    if baselines:
        lines += ["", "Rows `<cell>, <solver> ODE` integrate the cell's diagonal velocity with that solver."]
    lines += ["", *verdicts(table, columns)]
    lines += tool_scores(summary)
    for figure in sorted(sweep_dir.glob("*.png")):
        name = sweep_dir.name if figure.stem == "summary" else f"{sweep_dir.name}_{figure.stem}"
        target = figures_dir / f"{name}.png"
        shutil.copyfile(figure, target)
        lines += ["", f"![{name}]({target.relative_to(page_dir).as_posix()})"]
    return "\n".join(lines) + "\n"


def tool_scores(summary: dict) -> list[str]:
    """The table of the scores a tool wrote per run (scores.json, e.g. tools/mixture_experiment.py's
    flow-map errors), mean ± std per cell, with its verdicts; no lines when there are none."""
    cells = {cell: data["scores"] for cell, data in summary.items() if data.get("scores")}
    if not cells:
        return []
    columns = list(dict.fromkeys(c for scores in cells.values() for c in scores))
    family = {re.sub(r"\d+", "#", c): None for c in columns}
    order = {name: index for index, name in enumerate(family)}
    columns.sort(key=lambda c: (order[re.sub(r"\d+", "#", c)], column_order(c)[0]))
    table = {cell: {c: stats(scores.get(c, {})) for c in columns} for cell, scores in cells.items()}
    lines = ["", "Scores written by a tool for each run (scores.json):", ""]
    lines += ["| cell | n | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
    for cell, scores in table.items():
        n = max((count for _, _, count in scores.values()), default=0)
        lines += [f"| {cell} | {n} | " + " | ".join(cell_text(*scores[c][:2]) for c in columns) + " |"]
    return lines + ["", *verdicts(table, columns)]


def comparable_groups(cells: list[str]) -> dict[str, list[str]]:
    """Cells that differ only in their config, keyed by their grid values ('dimension=8-...'):
    a sweep names a cell `<config>-<name>=<value>-...`, and only the same grid point compares."""
    groups: dict[str, list[str]] = {}
    for cell in cells:
        grid = re.search(r"[A-Za-z_][\w.]*=", cell)
        groups.setdefault(cell[grid.start() :] if grid else "", []).append(cell)
    return groups


def verdicts(table: dict[str, dict[str, tuple[float, float, int]]], columns: list[str]) -> list[str]:
    """Per grid point and column, the best cell and the cells behind it by more than both
    standard deviations (beyond noise); and the cells with fewer than 3 seeds."""
    lines = []
    for key, cells in comparable_groups(list(table)).items():
        if len(cells) < 2:
            continue
        lines.append(f"- {key or 'all cells'}:")
        for column in columns:
            scored = {cell: table[cell][column] for cell in cells if math.isfinite(table[cell][column][0])}
            if not scored:
                continue
            best = min(scored, key=lambda cell: scored[cell][0])
            mean, std, _ = scored[best]
            spread = std if math.isfinite(std) else 0.0
            behind = [
                f"{_label(cell, key)} ({m:.4g})"
                for cell, (m, s, _) in scored.items()
                if cell != best and m - mean > spread + (s if math.isfinite(s) else 0.0)
            ]
            lost = (
                f"; behind it beyond the spread: {', '.join(behind)}" if behind else "; none behind beyond the spread"
            )
            lines.append(f"  - {column}: best {_label(best, key)} ({mean:.4g}){lost}")
    few = [cell for cell, scores in table.items() if max((n for *_, n in scores.values()), default=0) < 3]
    if few:
        lines.append(f"- Fewer than 3 seeds, so not a result yet: {', '.join(few)}.")
    return lines


def _label(cell: str, key: str) -> str:
    """A cell's name within its group: its config part."""
    return cell.removesuffix(key).rstrip("-") or cell


def build(sweep_dirs: list[Path], out: Path, title: str) -> str:
    """Write the page to `out` (figures beside it, in `<out stem>_figures/`); returns its text."""
    figures = out.parent / f"{out.stem}_figures"
    figures.mkdir(parents=True, exist_ok=True)
    intro = (
        "Generated by `python tools/report.py` from sweep directories of `tools/sweep.py`; "
        "do not edit by hand. Lower is better in every table."
    )
    text = f"# {title}\n\n{intro}\n\n" + "\n".join(section(d, figures, out.parent) for d in sweep_dirs)
    out.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="directories written by tools/sweep.py")
    parser.add_argument("--out", type=Path, default=Path("docs/sweeps.md"))
    parser.add_argument("--title", default="Sweeps: mean ± std over training seeds")
    args = parser.parse_args(argv)
    missing = [str(d) for d in args.sweeps if not (d / "summary.json").is_file()]
    if missing:
        parser.error(f"no summary.json in {', '.join(missing)}: run tools/sweep.py (or its --aggregate) there first")
    build(args.sweeps, args.out, args.title)
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
