"""`train.rollback`: a NaN loss and a finite loss spike (injected by `objective.fault`) roll the
run back to its last good state, and it ends where clean runs end, within their seed spread;
the same faults without rollback end outside it.

The spike multiplies the loss by 1e6 without gradient clipping: Adam's second moment grows by
1e12 and decays at 0.999 a step, so an unrolled run all but stops learning after the spike."""

import json
import statistics

import pytest

from flowmap_core import cli, config
from flowmap_core.rollback import RollbackSpec, Sentinel
from flowmap_core.scores import Scores

SMOKE = str(config.GIN_DIR / "smoke" / "checkerboard_lsd.gin")
RUN = [
    "train.steps = 200",
    "train.grad_clip = None",
    "train.log_every = 20",
    "train.checkpoint_every = 20",
    "evaluate.num_samples = 20000",
    "evaluate.step_counts = (1,)",
]
ROLLBACK = ["train.rollback = @rollback()", "rollback.spike_steps = 5", "rollback.window = 20"]
FAULTS = [
    "fault/objective.split.diagonal = @objective.flow_matching()",
    "fault/objective.split.off_diagonal = @objective.lsd()",
    "train.objective = @objective.fault()",
    "objective.fault.objective = @fault/objective.split()",
    "objective.fault.nan_at = 40",
    "objective.fault.spike_at = 60",
    "objective.fault.spike_steps = 30",
    "objective.fault.spike_factor = 1e6",
]


def test_the_sentinel_reads_nan_and_a_lasting_spike():
    sentinel = Sentinel(RollbackSpec(spike_factor=10, spike_steps=3, window=20))
    assert sentinel.watch(float("nan")) == "the loss is nan"
    assert all(sentinel.watch(1.0 + 0.01 * i) is None for i in range(30))
    assert sentinel.watch(50.0) is None and sentinel.watch(1.0) is None  # one high step passes
    assert sentinel.watch(50.0) is None and sentinel.watch(60.0) is None
    assert "stayed above 10 x its running median" in sentinel.watch(70.0)


def test_rollback_spec_refuses_a_factor_that_raises_the_learning_rate():
    with pytest.raises(ValueError, match="lr_factor must be in"):
        RollbackSpec(lr_factor=2.0)


def _kl(tmp_path, name: str, bindings: list[str]) -> tuple[float, list[dict]]:
    run_dir = tmp_path / name
    argv = ["train", SMOKE, "--run-dir", str(run_dir), "--no-progress"]
    assert cli.main(argv + [a for b in RUN + bindings for a in ("--gin", b)]) == 0
    table = Scores.loads((run_dir / "scores.json").read_text()).tables[0]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return table.rows[0].values[0], records


def test_a_nan_and_a_spike_roll_back_and_the_run_ends_as_clean_runs_do(tmp_path):
    clean = [_kl(tmp_path, f"clean{seed}", [f"train.seed = {seed}"])[0] for seed in (0, 1, 2)]
    faulted, records = _kl(tmp_path, "faulted", FAULTS + ROLLBACK)
    rollbacks = [r for r in records if "rollback" in r]
    assert [r["from_step"] for r in rollbacks] == [41, 65]  # after the NaN step at once; after 5 spiked steps
    assert [r["step"] for r in rollbacks] == [40, 60]  # back to the last healthy checkpoint
    assert records[-1]["step"] == 200
    unrolled, _ = _kl(tmp_path, "unrolled", FAULTS)
    mean, std = statistics.mean(clean), statistics.stdev(clean)
    assert abs(faulted - mean) <= 3 * std, (faulted, clean)
    assert unrolled - mean > 3 * std, (unrolled, clean)


def test_past_max_rollbacks_the_run_stops_with_one_line(tmp_path, capsys):
    bindings = FAULTS + ROLLBACK + ["rollback.max_rollbacks = 1"]
    argv = ["train", SMOKE, "--run-dir", str(tmp_path / "run"), "--no-progress", "--no-eval"]
    assert cli.main(argv + [a for b in RUN + bindings for a in ("--gin", b)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("flowmap: error:")]
    assert len(errors) == 1 and "the most rollback.max_rollbacks = 1 allows" in errors[0], errors
