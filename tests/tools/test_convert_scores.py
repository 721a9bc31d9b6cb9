"""tools/convert_scores.py: a run scored before scores.json (report.md and a tool's flat
scores.json) gets the scores.json `flowmap eval` would have written, to the 4 digits of its report."""

import json
import math
import shutil
import sys
from pathlib import Path

import pytest

from flowmap_core import cli, sweep
from flowmap_core.rundir import RunDir

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import convert_scores  # noqa: E402


def test_an_old_run_and_its_sweep_are_converted(smoke_run, tmp_path, capsys):
    runs = sweep.plan([str(smoke_run / "config.gin")], [], [0], tmp_path / "sweep")
    run_dir = runs[0].run_dir
    shutil.copytree(smoke_run, run_dir)
    bindings = ["evaluate.num_samples = 2000", "evaluate.baselines = (@sampler.ode(),)", "sampler.ode.solver = 'heun'"]
    assert cli.main(["eval", str(run_dir), *[a for b in bindings for a in ("--gin", b)]]) == 0
    capsys.readouterr()
    run = RunDir(run_dir)
    scored = run.read_scores()
    run.scores.write_text(json.dumps({"other": 1.0}))  # what a tool wrote before scores.json had tables
    old_config = run.config.read_text().replace("import flowmap_components", "import components")
    run.config.write_text(old_config)  # the package's name before it was namespaced

    sweep.record_plan(runs, tmp_path / "sweep", [])
    assert convert_scores.main([str(tmp_path / "sweep")]) == 0
    converted = run.read_scores()
    assert converted.tool == {"other": 1.0}
    assert converted.seed == scored.seed and converted.budget == scored.budget
    (old,), (new,) = scored.tables, converted.tables
    assert (new.metric, new.unit, new.counts, new.sampler) == (old.metric, "NFE", old.counts, old.sampler)
    assert (new.num_samples, new.seed) == (old.num_samples, old.seed)
    assert [(r.weights, r.sampler) for r in new.rows] == [(r.weights, r.sampler) for r in old.rows]
    assert ("ema_0.999", "heun ODE") in [(r.weights, r.sampler) for r in new.rows]
    for a, b in zip(old.rows, new.rows, strict=True):
        assert [round(v, 4) if math.isfinite(v) else "—" for v in a.values] == [
            v if math.isfinite(v) else "—" for v in b.values
        ]
    assert new.noise_floor == pytest.approx(old.noise_floor, abs=5e-5)
    assert sweep.Summary.read(tmp_path / "sweep").cells[runs[0].cell][0] == converted
