"""The benchmarks under tools/ run and print their tables (timings are theirs to report, not asserted)."""

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowmap_core.rundir import RunDir

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def bench_step(*args: str) -> str:
    command = [sys.executable, str(TOOLS / "bench_step.py"), "--steps", "1", "--rounds", "1", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_bench_step_prints_both_tables_and_the_same_loss():
    out = bench_step()
    flop_ratios = {}
    for method in ["fm", "lsd", "esd", "psd_m", "psd_u"]:
        cells = r"[\d.]+ \| [\d.]+ \| ([\d.]+) \| [\d.]+ \| [\d,]+ \| [\d.]+ \| [\d,]+ \| [\d.]+"
        row = re.search(rf"^\| {method} \| [\w-]+ \| none \| {cells} \|$", out, re.M)
        assert row, out
        flop_ratios[method] = float(row[1])
    assert flop_ratios["fm"] == 1.0
    assert 1.5 < flop_ratios["lsd"] < 2.1 and 1.2 < flop_ratios["psd_m"] < 1.5  # a JVP costs more than PSD's passes
    same = re.search(r"framework loss ([\d.]+), minimal loop ([\d.]+)", out)
    assert same and abs(float(same[1]) - float(same[2])) < 1e-4
    assert re.search(r"Framework tax \(.*\): [\d.]+x", out)


def test_bench_step_times_variants_against_the_config():
    out = bench_step("--variant", "train.batch_size=64; optimizer.adam.lr=1e-3")
    assert re.search(r"^\| as is \| [\d.]+ \| 1.00 \|$", out, re.M), out
    assert re.search(r"^\| train.batch_size=64; optimizer.adam.lr=1e-3 \| [\d.]+ \| [\d.]+ \|$", out, re.M), out


def test_grid_with_one_whole_jump():
    sys.path.insert(0, str(TOOLS))
    from jump_errors import grid_with_whole_jump

    assert grid_with_whole_jump(4, 2, None).tolist() == pytest.approx([i / 8 for i in range(9)])
    assert grid_with_whole_jump(4, 2, 3).tolist() == pytest.approx([0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 1.0])
    assert grid_with_whole_jump(2, 3, 0).tolist() == pytest.approx([0, 0.5, 4 / 6, 5 / 6, 1.0])


def test_jump_errors_prints_a_row_per_jump_and_its_k_steps_are_the_reports(smoke_run, tmp_path, capsys):
    """jump_errors starts from the evaluation's noise, so its plain k-step row is the score
    `flowmap eval` wrote for k steps, to the 4 digits both print."""
    from flowmap_core import cli

    sys.path.insert(0, str(TOOLS))
    import jump_errors

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    small = ["--gin", "evaluate.num_samples = 4000"]
    assert cli.main(["eval", str(run_dir), *small]) == 0
    capsys.readouterr()
    assert jump_errors.main([str(run_dir), "--steps", "2", "--refine", "2", *small]) == 0
    rows = re.findall(r"^\| (.+?) \| (\d+) \| ([\d.]+) \|$", capsys.readouterr().out, re.M)
    assert [(name, int(jumps)) for name, jumps, _ in rows] == [
        ("2 steps", 2),
        ("every jump refined x2", 4),
        ("refined, jump 0 -> 0.5 whole", 3),
        ("refined, jump 0.5 -> 1 whole", 3),
    ]
    reported = RunDir(run_dir).read_scores().table().value("ema_0.999", 2)
    assert rows[0][2] == f"{reported:.4f}"


SMOKE_IMAGES = [
    "--gin",
    "dataset.shards.url = 'runs/smoke_data/gray28/train'",
    "--gin",
    "real/dataset.shards.url = 'runs/smoke_data/gray28/test'",
    "--gin",
    "backbone.unet.channels = 8",
    "--gin",
    "train.batch_size = 8",
]


def test_bench_step_times_methods_of_an_image_dataset(smoke_data):
    out = bench_step("--dataset", "fashion_mnist", "--methods", "fm", "lsd", *SMOKE_IMAGES)
    assert re.search(r"^\| fm \| - \| none \| [\d.]+ \| 1.00 \| 1.00 \|", out, re.M), out
    assert re.search(r"^\| lsd \| tangent_pass \| none \| [\d.]+ \| [\d.]+ \| 1\.[5-9]\d \|", out, re.M), out
    assert "Framework tax" not in out, "the minimal loop is written for the checkerboard"


def test_bench_data_prints_stream_step_and_train_rates(smoke_data):
    command = [sys.executable, str(TOOLS / "bench_data.py"), "--url", "runs/smoke_data/gray28/train"]
    command += ["--config", "smoke/fashion_mnist_lsd.gin", "--workers", "0", "1", "--batches", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^\| (\d) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \| ([\d.]+) \|$", done.stdout, re.M)
    assert [int(row[0]) for row in rows] == [0, 1], done.stdout


def test_guided_edge_scores_every_class_at_w0_against_the_label_free_map(tmp_path):
    from flowmap_core import cli, config

    run_dir = tmp_path / "guided"
    smoke = config.GIN_DIR / "smoke" / "gaussian_mixture_guided_lsd.gin"
    argv = ["train", str(smoke), "--run-dir", str(run_dir), "--no-progress", "--no-eval", "--gin", "train.steps = 20"]
    assert cli.main(argv) == 0
    command = [sys.executable, str(TOOLS / "guided_edge.py"), str(run_dir), "--steps", "1", "2", "--samples", "2000"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^\| (class \d), w = 0 \|", (run_dir / "guided_edge.md").read_text(), re.M)
    assert rows == [f"class {c}" for c in range(8)]
    scores = RunDir(run_dir).read_scores().tool
    assert set(scores) == {f"{name}_{k}" for name in ("label_free", "w0_mean", "w0_ratio") for k in (1, 2)}
    assert scores["w0_ratio_2"] == pytest.approx(scores["w0_mean_2"] / scores["label_free_2"])


def test_adaptive_ode_adds_its_points_to_the_runs_scores(smoke_run, tmp_path):
    """dopri5 at a tighter tolerance takes at least as many evaluations; the scores merge into
    scores.json beside what was there."""
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    RunDir(run_dir).add_tool_scores({"other": 1.0})
    command = [sys.executable, str(TOOLS / "adaptive_ode.py"), str(run_dir), "--tolerances", "1e-2", "1e-4"]
    done = subprocess.run([*command, "--samples", "2000"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    scores = RunDir(run_dir).read_scores().tool
    assert scores["other"] == 1.0
    assert 6 <= scores["dopri5 tol 0.01 NFE"] <= scores["dopri5 tol 0.0001 NFE"]
    assert all(math.isfinite(scores[f"dopri5 tol {tol} score"]) for tol in ("0.01", "0.0001"))
    assert "| 0.0001 |" in (run_dir / "adaptive_ode.md").read_text()


def test_minimal_meanflow_trains_and_scores_every_step_count(tmp_path):
    command = [sys.executable, str(TOOLS / "minimal_meanflow.py"), "--steps", "3", "--samples", "2000"]
    done = subprocess.run([*command, "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^\| ema_0.999( \| [\d.]+){5} \|$", done.stdout, re.M), done.stdout
    scores = RunDir(tmp_path).read_scores().tool
    assert set(scores) == {f"kl_{k}" for k in (1, 2, 4, 8, 16)} | {"training_seconds"}
