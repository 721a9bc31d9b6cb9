"""tools/front.py: a sweep over training steps as accuracy against cost in flow-matching steps,
with the front, the targets and the time budget read off correctly."""

import json
import sys
from pathlib import Path

import pytest

from flowmap_core import config, sweep
from flowmap_core.scores import Budget, Row, Scores, Table

TOOLS = Path(__file__).resolve().parents[2] / "tools"
sys.path.insert(0, str(TOOLS))
import front  # noqa: E402


def cell(steps: int, one: list[float], four: list[float]) -> dict[int, Scores]:
    """Each seed's scores: the headline at 1 and 4 steps, and the training budget."""
    return {
        seed: Scores(
            tables=[
                Table(
                    metric="kl",
                    counts=(1, 4),
                    rows=[Row(weights="ema_0.999", values=[a, b])],
                    noise_floor=0.04,
                    num_samples=1000,
                    seed=1234,
                )
            ],
            seed=seed,
            budget=Budget(steps=steps, planned=steps, seconds=60.0, batch_size=1024),
        )
        for seed, (a, b) in enumerate(zip(one, four, strict=True))
    }


SUMMARY = sweep.Summary(
    {
        "steps=10000": cell(10000, [0.34, 0.36, 0.35], [0.15, 0.15, 0.14]),
        "steps=5000": cell(5000, [0.50, 0.52, 0.48], [0.20, 0.22, 0.21]),
        # Costlier than 5000 and worse in both columns: dominated.
        "steps=7000": cell(7000, [0.55, 0.53, 0.57], [0.25, 0.23, 0.24]),
    }
)


def test_points_are_sorted_by_cost_in_flow_matching_steps():
    points = front.points(SUMMARY, [1, 4], cost_ratio=2.5)
    assert [p.cell for p in points] == ["steps=5000", "steps=7000", "steps=10000"]
    assert [p.cost for p in points] == [12_500, 17_500, 25_000]
    mean, std, n = points[-1].scores[1]
    assert (round(mean, 6), round(std, 6), n) == (0.35, 0.01, 3)


def test_the_front_the_targets_and_the_budget():
    points = front.points(SUMMARY, [1, 4], cost_ratio=2.5)
    assert [front.on_front(p, points) for p in points] == [True, False, True]
    text = front.table(points, {1: 0.35, 4: 0.15}, fm_ms=24, budget_min=10, overhead_min=2)
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in text.splitlines() if "steps=" in line}
    # 25,000 FM steps at 24 ms: 10.0 training minutes, which with 2 of overhead miss 10.
    assert rows["steps=10000"][3] == "10.0"
    assert rows["steps=10000"][-3:] == ["yes", "yes", "no |"]
    assert rows["steps=5000"][-3:] == ["yes", "no", "yes |"]
    assert rows["steps=7000"][-3] == "no"


def test_the_command_writes_the_table_and_the_plot(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps(SUMMARY.to_json()))
    assert front.main([str(tmp_path), "--cost-ratio", "2.5"]) == 0
    text = (tmp_path / "front.md").read_text()
    assert "costs 2.50 flow-matching steps (given)" in text
    assert (tmp_path / "front.png").stat().st_size > 0


def test_the_cost_ratio_is_measured_from_the_sweeps_own_config(tmp_path):
    smoke = str(config.GIN_DIR / "smoke" / "checkerboard_lsd.gin")
    runs = sweep.plan([smoke], [["train.steps", "5000"]], [0], tmp_path, ["train.batch_size = 64"])
    sweep.record_plan(runs, tmp_path, [])
    config_file, bindings = front.sweep_config(tmp_path)
    assert config_file == smoke
    assert bindings == ["train.batch_size = 64"]
    ratio = front.measure_cost_ratio(config_file, bindings, smoke.replace("lsd", "fm"), steps=2, rounds=1)
    assert 0 < ratio < 100


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--cost-ratio", "2", "--nfe", "1"], "1 step counts but 2 targets"),
        (["--cost-ratio", "-1"], "--cost-ratio must be > 0"),
        (["--cost-ratio", "2", "--nfe", "3", "--targets", "0.3"], "no cell of"),
    ],
)
def test_bad_arguments_are_one_error_line(tmp_path, capsys, argv, message):
    (tmp_path / "summary.json").write_text(json.dumps(SUMMARY.to_json()))
    with pytest.raises(SystemExit) as exit_info:
        front.main([str(tmp_path), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_directory_without_a_summary_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        front.main([str(tmp_path), "--cost-ratio", "2"])
    assert "no summary.json" in capsys.readouterr().err
