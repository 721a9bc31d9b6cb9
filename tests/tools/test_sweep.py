"""tools/sweep.py: one command per run, finished runs skipped, interrupted ones resumed, and the
summary's mean ± std equal to the runs' own report tables."""

import importlib.util
import json
import math
import shlex
import statistics
from pathlib import Path

import pytest

from flowmap_core import config

TOOL = Path(__file__).resolve().parents[2] / "tools" / "sweep.py"
_spec = importlib.util.spec_from_file_location("sweep", TOOL)
sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweep)
_spec = importlib.util.spec_from_file_location("report_tool", TOOL.parent / "report.py")
report_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report_tool)

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


def test_print_commands_lists_one_command_per_cell_and_seed(tmp_path, capsys):
    argv = [SMOKE, "--out", str(tmp_path), "--grid", "optimizer.adam.lr", "1e-2", "1e-3", "--seeds", "0", "1"]
    assert sweep.main([*argv, "--print-commands"]) == 0
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


def test_report_table_is_read_with_missing_entries(tmp_path):
    (tmp_path / "report.md").write_text(
        "# run\n\n| setting | value |\n|---|---|\n| a | b |\n\n## kl\n\n"
        "| weights, sampler (none named: flow map) | NFE 1 | NFE 2 |\n|---|---|---|\n"
        "| ema_0.999 | 0.5000 | 0.2500 |\n| ema_0.999, heun ODE | — | 0.9000 |\n"
        "| true samples (noise floor) | 0.0100 | 0.0100 |\n\ntext\n"
    )
    table = sweep.read_report_table(tmp_path / "report.md")
    assert table["ema_0.999"] == {"NFE 1": 0.5, "NFE 2": 0.25}
    assert math.isnan(table["ema_0.999, heun ODE"]["NFE 1"]) and table["ema_0.999, heun ODE"]["NFE 2"] == 0.9
    assert sweep._count("NFE 2") == 2 and sweep._count("16 steps") == 16 and sweep._count("mean") is None


def test_a_guided_runs_table_is_read_beside_the_headline(tmp_path):
    (tmp_path / "report.md").write_text(
        "| weights | 1 step |\n|---|---|\n| ema_0.999 | 0.3000 |\n\n## Guided sampling\n\n"
        "| guidance w | 1 step |\n|---|---|\n| 0 | 1.2000 |\n| 1 | 0.8000 |\n"
        "| true class samples (noise floor) | 0.7000 |\n\n| weights | 1 step |\n|---|---|\n| other | 9.0 |\n"
    )
    table = sweep.read_report_table(tmp_path / "report.md")
    assert list(table) == [
        "ema_0.999",
        "guidance w = 0",
        "guidance w = 1",
        "guidance w = true class samples (noise floor)",
    ]
    assert table["guidance w = 1"] == {"1 step": 0.8}
    assert report_tool.headline_row({"guidance w = 0": {}, "online": {}}) == "online"


def test_the_figure_draws_each_cells_headline_ode_baselines_and_adaptive_points(tmp_path):
    per_seed = {"0": 0.5, "1": 0.7}
    data = {
        "lsd": {"ema_0.999": {"1 step": per_seed, "2 steps": per_seed}, "training": {"seconds": {"0": 540.0}}},
        "fm": {
            "ema_0.999": {"NFE 1": per_seed, "NFE 2": per_seed},
            "ema_0.999, heun ODE": {"NFE 2": per_seed},
            "online": {"NFE 1": per_seed},
            "online, heun ODE": {"NFE 2": per_seed},
            "true samples (noise floor)": {"NFE 1": per_seed},
            "scores": {"dopri5 tol 0.01 NFE": {"0": 38.0}, "dopri5 tol 0.01 score": per_seed, "lone NFE": per_seed},
        },
    }
    labels = sweep.plot(data, tmp_path / "summary.png")
    assert labels == ["lsd (9.0 min training)", "fm", "fm, heun ODE", "fm, dopri5 tol 0.01"]
    assert (tmp_path / "summary.png").stat().st_size > 0


def test_two_seeds_run_aggregate_and_are_not_rerun(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = [SMOKE, "--out", str(out), "--seeds", "0", "1", "--jobs", "2", *TINY]
    assert sweep.main(argv) == 0, capsys.readouterr().err
    cell = out / "checkerboard_lsd"
    tables = [sweep.read_report_table(cell / f"seed{s}" / "report.md") for s in (0, 1)]
    values = [t["ema_0.999"]["1 step"] for t in tables]
    assert values[0] != values[1]  # the seeds differ
    summary = json.loads((out / "summary.json").read_text())
    assert summary[cell.name]["ema_0.999"]["1 step"] == {"0": values[0], "1": values[1]}
    mean, std = statistics.fmean(values), statistics.stdev(values)
    assert f"| {cell.name} | 2 | {mean:.4f} ± {std:.4f} |" in (out / "summary.md").read_text()
    assert (out / "summary.png").stat().st_size > 1000
    plan = json.loads((out / "sweep.json").read_text())
    assert [(r["cell"], r["seed"]) for r in plan["runs"]] == [(cell.name, 0), (cell.name, 1)]
    assert plan["runs"][1]["command"].startswith("flowmap train ") and "train.seed = 1" in plan["runs"][1]["command"]

    page = tmp_path / "docs" / "sweeps.md"
    page.parent.mkdir()
    assert report_tool.main([str(out), "--out", str(page)]) == 0
    text = page.read_text()
    assert f"| {cell.name} | 2 | 4 | " in text and f"{mean:.4g} ± {std:.2g}" in text
    assert "tools/sweep.py" in text and plan["runs"][0]["command"] in text
    assert "Fewer than 3 seeds" in text and (page.parent / "sweeps_figures" / "sweep.png").is_file()

    capsys.readouterr()
    assert sweep.main(argv) == 0
    err = capsys.readouterr().err
    assert "2 runs, 2 already done" in err and "start" not in err

    (cell / "seed1" / "report.md").unlink()
    assert sweep.main([*argv, "--print-commands"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "seed1" in lines[0] and "--resume" in lines[0]


def test_report_names_the_best_and_who_lost_beyond_the_spread_at_each_grid_point():
    """Only cells at the same grid point compare; a cell behind by less than both standard
    deviations is not called behind."""
    table = {
        "lsd-dim=2": {"1 step": (0.30, 0.02, 3)},
        "fm-dim=2": {"1 step": (0.50, 0.05, 3)},
        "esd-dim=2": {"1 step": (0.33, 0.02, 3)},
        "lsd-dim=8": {"1 step": (0.90, 0.01, 1)},
        "fm-dim=8": {"1 step": (0.10, 0.01, 3)},
    }
    lines = report_tool.verdicts(table, ["1 step"])
    assert lines[:2] == ["- dim=2:", "  - 1 step: best lsd (0.3); behind it beyond the spread: fm (0.5)"]
    assert lines[2:4] == ["- dim=8:", "  - 1 step: best fm (0.1); behind it beyond the spread: lsd (0.9)"]
    assert lines[4] == "- Fewer than 3 seeds, so not a result yet: lsd-dim=8."


def test_report_puts_steps_and_nfe_in_one_column_with_baselines_and_tool_scores(tmp_path):
    seeds = {"0": 0.5, "1": 0.7, "2": 0.6}
    summary = {
        "lsd": {"ema_0.999": {"1 step": seeds, "2 steps": seeds}, "scores": {"map error": seeds, "NFE 2 e": seeds}},
        "fm": {
            "ema_0.999": {"NFE 1": seeds, "NFE 2": seeds},
            "ema_0.999, heun ODE": {"NFE 2": seeds},
            "online, heun ODE": {"NFE 2": {"0": 9.0}},
        },
    }
    sweep_dir = tmp_path / "kl_vs_nfe"
    sweep_dir.mkdir()
    (sweep_dir / "summary.json").write_text(json.dumps(summary))
    text = report_tool.section(sweep_dir, tmp_path, tmp_path)
    assert "| cell | n | training steps | minutes | NFE 1 | NFE 2 |" in text
    assert "| lsd | 3 | — | — | 0.6 ± 0.1 | 0.6 ± 0.1 |" in text
    assert "| fm, heun ODE | 3 | — | — | — | 0.6 ± 0.1 |" in text and text.count("heun ODE |") == 1
    assert "| cell | n | map error | NFE 2 e |" in text and "| lsd | 3 | 0.6 ± 0.1 | 0.6 ± 0.1 |" in text


@pytest.mark.parametrize("bad", [["--grid", "train.steps"], ["--jobs", "0"]])
def test_bad_arguments(bad, tmp_path):
    with pytest.raises(SystemExit):
        sweep.parse([SMOKE, "--out", str(tmp_path), *bad])
