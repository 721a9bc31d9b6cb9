"""Two processes on torch.distributed (gloo) take the same step as one process on the union batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("one_step.py")


def run_two_processes(out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FLOWMAP_TYPECHECK": "0"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT)]
    return subprocess.run([*command, "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)


def test_one_step_on_two_processes_equals_one_step_on_the_union(tmp_path):
    out = tmp_path / "differences.json"
    result = run_two_processes(out)
    assert result.returncode == 0, result.stderr[-3000:]
    differences = json.loads(out.read_text())
    methods = ["fm", "lsd", "esd", "psd_m", "lsd_learned"]
    shared = ["lsd_learned without shared statistics"]
    assert set(differences) == {*methods, *(f"{m} without all-reduce" for m in methods), *shared}
    for method in methods:
        assert differences[method] < 1e-10, (method, differences[method])
        assert differences[f"{method} without all-reduce"] > 1e-6, (method, "the control should differ")
    for control in shared:
        assert differences[control] > 1e-6, (control, "the control should differ")
