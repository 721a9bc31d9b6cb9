"""Every Markdown table flowmap writes: a run's `report.md`, rendered from its scores.json, and
the pages of sweeps (`flowmap report`).

Nothing else formats Markdown, and nothing reads it back: the numbers live in scores.json
(`flowmap_core.scores`) and a sweep's summary.json (`flowmap_core.sweep`).
"""

import math
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from flowmap_core.scores import FLOW_MAP, Scores, Table
from flowmap_core.sweep import Summary, mean_std, read_plan

FLOOR = "true samples (noise floor)"
CLASS_FLOOR = "true class samples (noise floor)"
EDGE_FLOOR = "true samples of the whole density (floor of w = 0)"


def table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table: the header, its rule, and a line per row (cells as `str` gives them;
    a `|` inside a cell becomes `/`)."""

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "/") for cell in cells) + " |"

    return "\n".join([line(head), "|---" * len(head) + "|", *(line(row) for row in rows)])


def score(value: float) -> str:
    """A score in a run's table: four decimals, `—` where it was not scored."""
    return "—" if math.isnan(value) else f"{value:.4f}"


def column_name(count: int, unit: str) -> str:
    """`NFE 4`, or `1 step`, `4 steps`."""
    return f"NFE {count}" if unit == "NFE" else f"{count} step{'s' if count > 1 else ''}"


def score_table(scores: Table) -> str:
    """A run's table: one row per weights and sampler (or guidance scale), one column per step
    count (NFE when baselines are scored), and the noise floors."""
    columns = [column_name(k, scores.unit) for k in scores.counts]
    width = len(scores.counts)
    rows = [[row.name, *map(score, row.values)] for row in scores.rows]
    if scores.kind == FLOW_MAP:
        first = f"weights, sampler (none named: {scores.sampler})" if scores.unit == "NFE" else "weights"
        rows.append([FLOOR, *[score(scores.noise_floor)] * width])
    else:
        first = "guidance w"
        rows.append([CLASS_FLOOR, *[score(scores.noise_floor)] * width])
        if scores.edge_floor is not None:
            rows.append([EDGE_FLOOR, *[score(scores.edge_floor)] * width])
    return table([first, *columns], rows)


def _card_lines(scores: Table) -> list[str]:
    """How the table was measured (its card), as a paragraph after it."""
    return [] if scores.card is None else [f"Measured with: {scores.card.line()}.", ""]


def _figure_lines(figures: Sequence[str]) -> list[str]:
    return [line for figure in figures for line in (f"![{Path(figure).stem}]({figure})", "")]


def run_report(
    name: str,
    settings: Sequence[tuple[str, str]],
    scores: Scores,
    figures: Sequence[str] = (),
    guided_figures: Sequence[str] = (),
) -> str:
    """The text of a run's report.md: its settings, its training budget, each score table of
    scores.json, and its figures."""
    lines = [f"# flowmap run: {name}", "", table(["setting", "value"], settings), ""]
    budget = scores.budget
    if budget is not None:
        lines += [
            f"Training time: {budget.seconds / 60:.1f} min for {budget.steps:,} steps "
            f"({budget.steps / max(budget.seconds, 1e-9):.1f} steps/s), {budget.skipped} skipped.",
            "",
        ]
    result = scores.table(FLOW_MAP)
    if result is not None:
        lines += [
            f"## {result.metric} at each number of flow-map steps ({result.num_samples:,} samples)",
            "",
            score_table(result),
            "",
            *_card_lines(result),
            *_figure_lines(figures),
        ]
    for guided in (t for t in scores.tables if t.kind != FLOW_MAP):
        if guided.pooled:
            how = (
                "Every class sampled at guidance w from the same noise, class-balanced, and scored as one set "
                "against the data; the noise floor is held-out data of the same size. A grid per w: one row "
                "per class, a panel per step count."
            )
        else:
            how = (
                "Each class sampled at guidance w and scored against its own density, averaged over classes; "
                "at w = 0, where b^0 = b(x, null) carries no class, against the whole density, beside that "
                "density's own floor at a class's sample count."
            )
        lines += [
            f"## Guided sampling: class-conditional {guided.metric} at each guidance scale",
            "",
            how,
            "",
            score_table(guided),
            "",
            *_card_lines(guided),
            *_figure_lines(guided_figures),
        ]
    return "\n".join(lines)


# ------------------------------------------------------------------------- sweep pages


def spread(mean: float, std: float) -> str:
    """A mean over seeds with its sample standard deviation (just the mean for one seed)."""
    if math.isnan(mean):
        return "—"
    return f"{mean:.4g} ± {std:.2g}" if math.isfinite(std) else f"{mean:.4g}"


def _first_number(name: str) -> int:
    found = re.search(r"\d+", name)
    return int(found.group()) if found else 10**9


def sweep_section(
    sweep_dir: Path,
    summary: Summary,
    plan: dict | None = None,
    missing: Sequence[str] = (),
    figures_dir: Path | None = None,
    page_dir: Path | None = None,
) -> str:
    """The section of one sweep: its command, each cell's budget and headline scores per NFE
    (mean ± sample std over seeds, and n), each cell's ODE baselines, the noise floor, the
    scores tools wrote, who lost beyond the spread at each grid point, and the sweep's figures
    (copied into `figures_dir` and linked from `page_dir`; without them, linked in place).
    Cells scored differently (their cards differ) are refused, naming the difference."""
    summary.check_comparable()
    lines = [f"## {sweep_dir.name}", ""]
    if plan:
        lines += [f"Produced by `{plan['sweep']}`; each run is one command, e.g.", ""]
        lines += ["```", plan["runs"][0]["command"], "```", ""] if plan.get("runs") else []
    headlines = {cell: summary.headline(cell) for cell in summary.cells}
    counts = sorted({k for series in headlines.values() if series for k in series.values})
    columns = [f"NFE {k}" for k in counts]
    table_stats = {cell: {f"NFE {k}": s.stats(k) for k in counts} for cell, s in headlines.items() if s}
    baselines = {
        series.label: {f"NFE {k}": series.stats(k) for k in counts}
        for cell in table_stats
        for series in summary.baselines(cell)
    }
    rows = []
    for label, stats in (table_stats | baselines).items():
        steps, seconds = summary.budget(label) if label in summary.cells else ((math.nan,) * 3, (math.nan,) * 3)
        n = max((count for _, _, count in stats.values()), default=0)
        budget = [f"{steps[0]:,.0f}" if math.isfinite(steps[0]) else "—", spread(seconds[0] / 60, seconds[1] / 60)]
        rows.append([label, n, *budget, *[spread(*stats[c][:2]) for c in columns]])
    lines.append(table(["cell", "n", "training steps", "minutes", *columns], rows))
    if table_stats:
        floor = summary.noise_floor(next(iter(table_stats)))
        lines += ["", f"Noise floor (true samples against the data): {spread(*floor[:2])}."]
    lines += ["", "A flow map's k steps are k network evaluations (NFE k)."] if columns else []
    if baselines:
        lines += ["", "Rows `<cell>, <solver> ODE` integrate the cell's diagonal velocity with that solver."]
    lines += ["", *verdicts(table_stats, columns)]
    lines += _tool_scores(summary)
    if missing:
        lines += ["", "Runs without scores (not finished or failed): " + ", ".join(missing)]
    for figure in sorted(sweep_dir.glob("*.png")):
        name = sweep_dir.name if figure.stem == "summary" else f"{sweep_dir.name}_{figure.stem}"
        if figures_dir is None:
            lines += ["", f"![{name}]({figure.name})"]
            continue
        target = figures_dir / f"{name}.png"
        shutil.copyfile(figure, target)
        lines += ["", f"![{name}]({target.relative_to(page_dir or figures_dir.parent).as_posix()})"]
    return "\n".join(lines) + "\n"


def _tool_scores(summary: Summary) -> list[str]:
    """The table of the scores a tool wrote per run (e.g. tools/mixture_experiment.py's flow-map
    errors), mean ± std per cell, with its verdicts; no lines when there are none."""
    cells = {cell: summary.tool_scores(cell) for cell in summary.cells}
    cells = {cell: scores for cell, scores in cells.items() if scores}
    if not cells:
        return []
    columns = list(dict.fromkeys(c for scores in cells.values() for c in scores))
    family = {re.sub(r"\d+", "#", c): None for c in columns}
    order = {name: index for index, name in enumerate(family)}
    columns.sort(key=lambda c: (order[re.sub(r"\d+", "#", c)], _first_number(c)))
    stats = {cell: {c: mean_std(scores.get(c, [])) for c in columns} for cell, scores in cells.items()}
    rows = []
    for cell, by_column in stats.items():
        n = max((count for _, _, count in by_column.values()), default=0)
        rows.append([cell, n, *[spread(*by_column[c][:2]) for c in columns]])
    lines = ["", "Scores written by a tool for each run (scores.json):", ""]
    return lines + [table(["cell", "n", *columns], rows), "", *verdicts(stats, columns)]


def comparable_groups(cells: Sequence[str]) -> dict[str, list[str]]:
    """Cells that differ only in their config, keyed by their grid values ('dimension=8-...'):
    a sweep names a cell `<config>-<name>=<value>-...`, and only the same grid point compares."""
    groups: dict[str, list[str]] = {}
    for cell in cells:
        grid = re.search(r"[A-Za-z_][\w.]*=", cell)
        groups.setdefault(cell[grid.start() :] if grid else "", []).append(cell)
    return groups


def verdicts(stats: dict[str, dict[str, tuple[float, float, int]]], columns: Sequence[str]) -> list[str]:
    """Per grid point and column, the best cell and the cells behind it by more than both
    standard deviations (beyond noise); and the cells with fewer than 3 seeds. Lower is better."""
    lines = []
    for key, cells in comparable_groups(list(stats)).items():
        if len(cells) < 2:
            continue
        lines.append(f"- {key or 'all cells'}:")
        for column in columns:
            scored = {cell: stats[cell][column] for cell in cells if math.isfinite(stats[cell][column][0])}
            if not scored:
                continue
            best = min(scored, key=lambda cell: scored[cell][0])
            mean, std, _ = scored[best]
            width = std if math.isfinite(std) else 0.0
            behind = [
                f"{_label(cell, key)} ({m:.4g})"
                for cell, (m, s, _) in scored.items()
                if cell != best and m - mean > width + (s if math.isfinite(s) else 0.0)
            ]
            lost = (
                f"; behind it beyond the spread: {', '.join(behind)}" if behind else "; none behind beyond the spread"
            )
            lines.append(f"  - {column}: best {_label(best, key)} ({mean:.4g}){lost}")
    few = [cell for cell, by_column in stats.items() if max((n for *_, n in by_column.values()), default=0) < 3]
    if few:
        lines.append(f"- Fewer than 3 seeds, so not a result yet: {', '.join(few)}.")
    return lines


def _label(cell: str, key: str) -> str:
    """A cell's name within its group: its config part."""
    return cell.removesuffix(key).rstrip("-") or cell


def sweep_page(sweep_dirs: Sequence[Path], out: Path, title: str) -> str:
    """Write a page of sweeps to `out` (figures beside it, in `<out stem>_figures/`); returns its text."""
    figures = out.parent / f"{out.stem}_figures"
    figures.mkdir(parents=True, exist_ok=True)
    intro = (
        "Generated by `flowmap report` from the directories of `flowmap sweep`; "
        "do not edit by hand. Lower is better in every table."
    )
    sections = [
        sweep_section(d, Summary.read(d), read_plan(d), figures_dir=figures, page_dir=out.parent) for d in sweep_dirs
    ]
    text = f"# {title}\n\n{intro}\n\n" + "\n".join(sections)
    out.write_text(text)
    return text
