"""The benchmarks under tools/ run and print their tables (timings are theirs to report, not asserted)."""

import re
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def bench_step(*args: str) -> str:
    command = [sys.executable, str(TOOLS / "bench_step.py"), "--steps", "1", "--rounds", "1", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_bench_step_prints_both_tables_and_the_same_loss():
    out = bench_step()
    for method in ["fm", "lsd", "esd", "psd_m", "psd_u"]:
        assert re.search(rf"^\| {method} \| [\d.]+ \| [\d.]+ \|$", out, re.M), out
    same = re.search(r"framework loss ([\d.]+), minimal loop ([\d.]+)", out)
    assert same and abs(float(same[1]) - float(same[2])) < 1e-4
    assert re.search(r"Framework tax \(.*\): [\d.]+x", out)


def test_bench_step_times_variants_against_the_config():
    out = bench_step("--variant", "train.batch_size=64; optimizer.adam.lr=1e-3")
    assert re.search(r"^\| as is \| [\d.]+ \| 1.00 \|$", out, re.M), out
    assert re.search(r"^\| train.batch_size=64; optimizer.adam.lr=1e-3 \| [\d.]+ \| [\d.]+ \|$", out, re.M), out
