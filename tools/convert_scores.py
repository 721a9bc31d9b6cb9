"""Write scores.json for runs scored before it existed, and a sweep's summary.json anew.

    python tools/convert_scores.py RUN_OR_SWEEP_DIR [...]

A one-off converter for run directories written before scores.json held every score: it
reads their report.md score tables (the `| weights ...` table and a guided run's
`| guidance w ...` table, as they were printed, to 4 decimals), takes the budget, seed and
evaluation seed from the run's own config and last checkpoint, keeps the flat
`{"name": number}` scores a tool wrote into the old scores.json as tool scores, and writes the
new scores.json. Given a sweep directory (one with sweep.json), it converts each of its runs,
then gathers them into summary.json, summary.md and summary.png as `flowmap sweep` does, so
`flowmap report` reads it. A run whose scores.json is already of the current format is left
as it is. This is the only code that reads Markdown back, and only markdown written before
the change.
"""

import argparse
import json
import re
import sys
from pathlib import Path

from flowmap_core import config, runs, sweep
from flowmap_core.rundir import RunDir
from flowmap_core.scores import FLOW_MAP, Row, Scores, Table

FLOORS = {
    "true samples (noise floor)": "noise_floor",
    "true class samples (noise floor)": "noise_floor",
    "true samples of the whole density (floor of w = 0)": "edge_floor",
}


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _number(text: str) -> float:
    return float("nan") if text == "—" else float(text)


def read_tables(text: str, headline: str, guided_samples: int, seed: int) -> list[Table]:
    """The score tables of an old report.md: its first `| weights` table and first `| guidance w`
    table (whose rows are of the `headline` weights, `guided_samples` in all)."""
    lines = text.splitlines()
    found: dict[str, Table] = {}
    samples = re.search(r"at each number of flow-map steps \(([\d,]+) samples\)", text)
    metric = re.search(r"^## (.+?) at each number of flow-map steps", text, re.M)
    guided_metric = re.search(r"^## Guided sampling: class-conditional (.+?) at each guidance scale", text, re.M)
    for start, line in enumerate(lines):
        head = re.match(r"^\|\s*(weights|guidance w)\b", line)
        if not head or head[1] in found:
            continue
        header = _cells(line)
        unit = "NFE" if header[1].startswith("NFE") else "steps"
        counts = tuple(int(re.search(r"\d+", column).group()) for column in header[1:])
        sampler = re.search(r"none named: (.+)\)", header[0])
        rows, floors = [], {}
        for row in lines[start + 2 :]:
            if not row.startswith("|"):
                break
            name, *values = _cells(row)
            if name in FLOORS:
                floors[FLOORS[name]] = _number(values[0])
            elif head[1] == "guidance w":
                rows.append(Row(weights=headline, guidance=float(name), values=[_number(v) for v in values]))
            else:
                weights, _, solver = name.partition(", ")
                rows.append(Row(weights=weights, sampler=solver or FLOW_MAP, values=[_number(v) for v in values]))
        guided = head[1] == "guidance w"
        named = guided_metric if guided else metric
        found[head[1]] = Table(
            kind="guided" if guided else FLOW_MAP,
            metric=named[1] if named else "score",
            unit=unit,
            counts=counts,
            rows=rows,
            noise_floor=floors.get("noise_floor", float("nan")),
            edge_floor=floors.get("edge_floor"),
            num_samples=guided_samples if guided else int(samples[1].replace(",", "")) if samples else 0,
            seed=seed,
            sampler=sampler[1] if sampler else FLOW_MAP,
        )
    return list(found.values())


def convert_run(run_dir: Path) -> Scores | None:
    """Write the run's scores.json from its report.md and old scores.json (None: nothing to convert)."""
    run = RunDir(run_dir)
    old = json.loads(run.scores.read_text()) if run.scores.is_file() else {}
    if old.get("format") is not None:
        return run.read_scores()
    if not run.report.is_file() and not old:
        return None
    with config.isolated():
        trainer = runs.open_run(run)
        spec = runs.build_eval_spec()
    classes = getattr(trainer.spec.dataset, "num_classes", None) or 1
    guided_samples = spec.guidance_samples // classes * classes
    text = run.report.read_text() if run.report.is_file() else ""
    tables = read_tables(text, runs.headline_weights(trainer), guided_samples, spec.seed)
    tool = {str(k): float(v) for k, v in old.items() if isinstance(v, int | float)}
    scores = Scores(tables=tables, seed=trainer.spec.seed, budget=runs.budget(trainer), tool=tool)
    run.write_scores(scores)
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run directories or sweep directories")
    args = parser.parse_args(argv)
    for path in args.dirs:
        if (path / "sweep.json").is_file():
            planned = sweep.planned_runs(path)
            for run in planned:
                convert_run(run.run_dir)
            sweep.aggregate(planned, path)
            print(f"convert_scores: {len(planned)} runs of {path}, summary.json written", file=sys.stderr)
        elif convert_run(path) is None:
            print(f"convert_scores: {path} has no report.md or scores.json to convert", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
