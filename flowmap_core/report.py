"""Every Markdown table flowmap writes: a run's `report.md`, rendered from its scores.json, and
the pages of sweeps (`flowmap report`).

Nothing else formats Markdown, and nothing reads it back: the numbers live in scores.json
(`flowmap_core.scores`) and a sweep's summary.json (`flowmap_core.sweep`).
"""

import math
from collections.abc import Sequence
from pathlib import Path

from flowmap_core.scores import FLOW_MAP, Scores, Table

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
            *_figure_lines(guided_figures),
        ]
    return "\n".join(lines)
