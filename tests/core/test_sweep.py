"""`flowmap sweep` and `flowmap report`: one command per run, finished runs skipped, interrupted
ones resumed, and the summary's mean ± std equal to the runs' own scores.json."""

import json
import math
import shlex
import statistics

import attrs
import pytest

from flowmap_core import cli, config, figures, report, sweep
from flowmap_core.cards import Card
from flowmap_core.rundir import RunDir
from flowmap_core.scores import Budget, Row, Scores, Table

SMOKE = str(config.GIN_DIR / "smoke" / "checkerboard_lsd.gin")
TINY = [
    "--gin",
    "train.steps = 4",
    "--gin",
    "train.checkpoint_every = 2",
    "--gin",
    "evaluate.num_samples = 400",
    "--gin",
    "evaluate.plot_samples = 100",
]


def scores(headline: dict[int, float], *, baseline: dict[int, float] | None = None, seconds=60.0, tool=None):
    """A run's scores: the headline weights at each NFE, perhaps a Heun baseline, a budget."""
    counts = tuple(headline)
    rows = [Row(weights="ema_0.999", values=list(headline.values()))]
    if baseline is not None:
        rows.append(Row(weights="ema_0.999", sampler="heun ODE", values=[baseline.get(k, math.nan) for k in counts]))
        rows.append(Row(weights="online", sampler="heun ODE", values=[9.0] * len(counts)))
    table = Table(
        metric="kl",
        unit="NFE" if baseline is not None else "steps",
        counts=counts,
        rows=rows,
        noise_floor=0.04,
        num_samples=400,
        seed=1234,
    )
    budget = Budget(steps=100, planned=100, seconds=seconds, batch_size=8)
    return Scores(tables=[table], seed=0, budget=budget, tool=tool or {})


def test_print_commands_lists_one_command_per_cell_and_seed(tmp_path, capsys):
    argv = [SMOKE, "--out", str(tmp_path), "--grid", "optimizer.adam.lr", "1e-2", "1e-3", "--seeds", "0", "1"]
    assert cli.main(["sweep", *argv, "--print-commands"]) == 0
    commands = [shlex.split(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(commands) == 4
    run_dirs = {c[c.index("--run-dir") + 1] for c in commands}
    assert run_dirs == {str(tmp_path / f"lr=1e-{e}" / f"seed{s}") for e in (2, 3) for s in (0, 1)}
    first = commands[0]
    assert first[first.index("train") + 1] == SMOKE and "--resume" not in first
    assert "optimizer.adam.lr = 1e-2" in first and "train.seed = 0" in first


def test_cells_are_named_by_config_and_value():
    names = [name for name, _, _ in sweep.cells(["a/lsd.gin", "a/esd.gin"], [["train.objective", "@objective.psd()"]])]
    assert names == ["lsd-objective=objective.psd", "esd-objective=objective.psd"]


def test_the_figure_draws_each_cells_headline_ode_baselines_and_adaptive_points(tmp_path):
    tool = {"dopri5 tol 0.01 NFE": 38.0, "dopri5 tol 0.01 score": 0.5, "lone NFE": 0.5}
    summary = sweep.Summary(
        {
            "lsd": {0: scores({1: 0.5, 2: 0.5}, seconds=540.0), 1: scores({1: 0.7, 2: 0.7}, seconds=540.0)},
            "fm": {0: scores({1: 0.5, 2: 0.5}, baseline={2: 0.5}, tool=tool)},
        }
    )
    labels = figures.plot_sweep(summary, tmp_path / "summary.png")
    assert labels == ["lsd (9.0 min training)", "fm (1.0 min training)", "fm, heun ODE", "fm, dopri5 tol 0.01"]
    assert (tmp_path / "summary.png").stat().st_size > 0


def test_a_summary_survives_its_file():
    summary = sweep.Summary({"lsd": {0: scores({1: 0.5, 2: math.nan}, baseline={2: 0.4}, tool={"a": 1.0})}})
    assert sweep.Summary.from_json(json.loads(json.dumps(summary.to_json()))) == summary
    with pytest.raises(sweep.SweepError, match="convert_scores"):
        sweep.Summary.from_json({"lsd": {"ema_0.999": {"1 step": {"0": 0.5}}}})


def test_two_seeds_run_aggregate_and_are_not_rerun(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = [SMOKE, "--out", str(out), "--seeds", "0", "1", "--jobs", "2", *TINY]
    assert cli.main(["sweep", *argv]) == 0, capsys.readouterr().err
    cell = out / "checkerboard_lsd"
    runs = [RunDir(cell / f"seed{s}").read_scores() for s in (0, 1)]
    values = [s.table().value("ema_0.999", 1) for s in runs]
    assert values[0] != values[1]  # the seeds differ
    assert [s.seed for s in runs] == [0, 1] and all(s.budget.steps == 4 for s in runs)
    card = runs[0].table().card
    assert card == runs[1].table().card and card.metric == "kl" and card.num_samples == 400
    assert card.features.startswith("200x200 histogram") and not card.quantised
    assert f"Measured with: {card.line()}." in (cell / "seed0" / "report.md").read_text()
    summary = sweep.Summary.read(out)
    assert summary.headline(cell.name).values[1] == {0: values[0], 1: values[1]}
    mean, std = statistics.fmean(values), statistics.stdev(values)
    assert f"| {cell.name} | 2 | 4 | " in (out / "summary.md").read_text()
    assert f"{mean:.4g} ± {std:.2g}" in (out / "summary.md").read_text()
    assert (out / "summary.png").stat().st_size > 1000
    plan = json.loads((out / "sweep.json").read_text())
    assert [(r["cell"], r["seed"]) for r in plan["runs"]] == [(cell.name, 0), (cell.name, 1)]
    assert plan["runs"][1]["command"].startswith("flowmap train ") and "train.seed = 1" in plan["runs"][1]["command"]
    assert sweep.planned_runs(out) == sweep.plan([SMOKE], [], [0, 1], out, TINY[1::2])

    page = tmp_path / "docs" / "sweeps.md"
    page.parent.mkdir()
    assert cli.main(["report", str(out), "--out", str(page)]) == 0
    text = page.read_text()
    assert f"| {cell.name} | 2 | 4 | " in text and f"{mean:.4g} ± {std:.2g}" in text
    assert "flowmap sweep" in text and plan["runs"][0]["command"] in text
    assert "Fewer than 3 seeds" in text and (page.parent / "sweeps_figures" / "sweep.png").is_file()
    floors = [s.table().noise_floor for s in runs]
    assert f"Noise floor (true samples against the data): {report.spread(statistics.fmean(floors), 0.0)[:6]}" in text

    capsys.readouterr()
    assert cli.main(["sweep", *argv]) == 0
    err = capsys.readouterr().err
    assert "2 runs, 2 already done" in err and "start" not in err

    (cell / "seed1" / "scores.json").unlink()
    assert cli.main(["sweep", *argv, "--print-commands"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "seed1" in lines[0] and "--resume" in lines[0]


def test_report_names_the_best_and_who_lost_beyond_the_spread_at_each_grid_point():
    """Only cells at the same grid point compare; a cell behind by less than both standard
    deviations is not called behind."""
    table = {
        "lsd-dim=2": {"NFE 1": (0.30, 0.02, 3)},
        "fm-dim=2": {"NFE 1": (0.50, 0.05, 3)},
        "esd-dim=2": {"NFE 1": (0.33, 0.02, 3)},
        "lsd-dim=8": {"NFE 1": (0.90, 0.01, 1)},
        "fm-dim=8": {"NFE 1": (0.10, 0.01, 3)},
    }
    lines = report.verdicts(table, ["NFE 1"])
    assert lines[:2] == ["- dim=2:", "  - NFE 1: best lsd (0.3); behind it beyond the spread: fm (0.5)"]
    assert lines[2:4] == ["- dim=8:", "  - NFE 1: best fm (0.1); behind it beyond the spread: lsd (0.9)"]
    assert lines[4] == "- Fewer than 3 seeds, so not a result yet: lsd-dim=8."


def test_report_puts_steps_and_nfe_in_one_column_with_baselines_and_tool_scores(tmp_path):
    values = (0.5, 0.7, 0.6)
    tool = {"map error": 0.0, "NFE 2 e": 0.0}
    summary = sweep.Summary(
        {
            "lsd": {s: scores({1: v, 2: v}, tool={k: v for k in tool}) for s, v in enumerate(values)},
            "fm": {s: scores({1: v, 2: v}, baseline={2: v}) for s, v in enumerate(values)},
        }
    )
    sweep_dir = tmp_path / "kl_vs_nfe"
    sweep_dir.mkdir()
    text = report.sweep_section(sweep_dir, summary)
    assert "| cell | n | training steps | minutes | NFE 1 | NFE 2 |" in text
    assert "| lsd | 3 | 100 | 1 ± 0 | 0.6 ± 0.1 | 0.6 ± 0.1 |" in text
    assert "| fm, heun ODE | 3 | — | — | — | 0.6 ± 0.1 |" in text and text.count("heun ODE |") == 1
    assert "| cell | n | NFE 2 e | map error |" in text and "| lsd | 3 | 0.6 ± 0.1 | 0.6 ± 0.1 |" in text


@pytest.mark.parametrize(
    "bad, message", [(["--grid", "train.steps"], "--grid takes a binding"), (["--jobs", "0"], "--jobs must be")]
)
def test_bad_arguments_are_one_error_line(bad, message, tmp_path, capsys):
    assert cli.main(["sweep", SMOKE, "--out", str(tmp_path), *bad]) == 2
    assert message in capsys.readouterr().err


def test_a_directory_without_a_summary_is_one_error_line(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path), "--out", str(tmp_path / "page.md")]) == 2
    assert "no summary.json" in capsys.readouterr().err


def test_report_refuses_cells_scored_differently(tmp_path, capsys):
    card = Card(metric="kl", features="200x200 histogram", reference="dataset.checkerboard", num_samples=400, seed=1234)
    cells = {}
    for cell, samples in (("a", 400), ("b", 4000)):
        run = scores({1: 0.5})
        table = attrs.evolve(run.tables[0], card=attrs.evolve(card, num_samples=samples))
        cells[cell] = {0: attrs.evolve(run, tables=[table])}
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps(sweep.Summary(cells).to_json()))
    assert cli.main(["report", str(out), "--out", str(tmp_path / "page.md")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "b seed 0 was scored differently from a seed 0 (num_samples: 400 vs 4000)" in lines[0]
    same = {
        cell: {0: attrs.evolve(run[0], tables=[attrs.evolve(run[0].tables[0], card=card)])}
        for cell, run in cells.items()
    }
    (out / "summary.json").write_text(json.dumps(sweep.Summary(same).to_json()))
    assert cli.main(["report", str(out), "--out", str(tmp_path / "page.md")]) == 0
