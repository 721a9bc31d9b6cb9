"""The `flowmap` command: listing, sampling, evaluation, and one-line errors for bad input."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from flowmap_core import cli, config, registry
from flowmap_core.rundir import RunDir

SMOKE = str(config.GIN_DIR / "smoke" / "checkerboard_lsd.gin")


def error_of(capsys, argv):
    assert cli.main(argv) == 2
    return capsys.readouterr().err


def test_components_lists_every_family(capsys):
    assert cli.main(["components"]) == 0
    out = capsys.readouterr().out
    for family in registry.families():
        assert f"{family.name}:" in out
    for name in ["lsd", "esd", "psd", "flow_matching", "checkerboard", "histogram_kl", "mlp", "gaussian"]:
        assert name in out


def test_import_finds_a_module_in_the_current_directory(tmp_path):
    """`flowmap --import my_module`, as the README writes it, from the folder holding my_module.py."""
    module = """
        from flowmap_core.registry import register
        from flowmap_components.weighting.uniform import Uniform

        @register("weighting", "from_the_current_directory")
        class Mine(Uniform):
            pass
        """
    (tmp_path / "my_module.py").write_text(textwrap.dedent(module))
    script = Path(sys.executable).with_name("flowmap")
    done = subprocess.run(
        [str(script), "--import", "my_module", "components"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "from_the_current_directory" in done.stdout


def test_sample_writes_points(smoke_run, tmp_path, capsys):
    out = tmp_path / "x.npy"
    assert cli.main(["sample", str(smoke_run), "--steps", "2", "--n", "100", "--out", str(out)]) == 0
    assert np.load(out).shape == (100, 2)
    assert "2 network evaluations" in capsys.readouterr().out
    assert cli.main(["sample", str(smoke_run), "--steps", "4", "--n", "50", "--out", str(out), "--ode", "heun"]) == 0
    assert np.load(out).shape == (50, 2)
    assert "8 network evaluations" in capsys.readouterr().out


def test_sample_draws_the_samples_the_evaluation_scores(smoke_run, tmp_path, capsys):
    """With the evaluation's sample count and seed (the defaults), `flowmap sample --steps k`
    gives the very samples report.md scored at k steps."""
    from flowmap_core.run_sampler import RunSampler

    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    assert cli.main(["eval", str(run_dir), "--gin", "evaluate.num_samples = 1000"]) == 0
    out = tmp_path / "x.npy"
    assert cli.main(["sample", str(run_dir), "--steps", "2", "--n", "1000", "--out", str(out)]) == 0
    sampler = RunSampler.open(run_dir, bindings=["evaluate.num_samples = 1000"])
    score = sampler.score(torch.from_numpy(np.load(out)).to(torch.float32))
    assert score == RunDir(run_dir).read_scores().table().value("ema_0.999", 2)


def test_eval_scores_ema_and_online_weights(smoke_run, capsys):
    assert cli.main(["eval", str(smoke_run), "--gin", "evaluate.num_samples = 2000"]) == 0
    out = capsys.readouterr().out
    assert "| ema_0.999 |" in out and "| online |" in out and "noise floor" in out


def test_unknown_component_lists_the_known_ones(capsys, tmp_path):
    err = error_of(capsys, ["train", SMOKE, "--run-dir", str(tmp_path), "--gin", "train.objective = @objective.lsdd()"])
    assert "@objective.lsdd()" in err
    assert f"known objective names: {', '.join(registry.names('objective'))}" in err


def test_missing_binding_is_named(capsys, tmp_path):
    err = error_of(capsys, ["train", "base/train.gin", "--run-dir", str(tmp_path)])
    assert "Required bindings for `train` not provided" in err and "'dataset'" in err


def test_binding_for_a_missing_parameter(capsys, tmp_path):
    err = error_of(capsys, ["train", SMOKE, "--run-dir", str(tmp_path), "--gin", "train.stepz = 3"])
    assert "doesn't have a parameter named 'stepz'" in err


def test_malformed_gin_file_names_file_and_line(capsys, tmp_path):
    bad = tmp_path / "bad.gin"
    bad.write_text("include 'base/train.gin'\n\ntrain.steps = (3\n")
    err = error_of(capsys, ["train", str(bad), "--run-dir", str(tmp_path / "run")])
    assert str(bad) in err and "line" in err and "malformed" in err


def test_bad_argument_value_is_one_line(capsys, tmp_path):
    psd = str(config.GIN_DIR / "smoke" / "checkerboard_psd_m.gin")
    err = error_of(capsys, ["train", psd, "--run-dir", str(tmp_path), "--gin", "objective.psd.h = 2.0"])
    assert "objective.psd.h must be None or in (0, 1)" in err


def test_missing_config_file(capsys):
    err = error_of(capsys, ["train", "nowhere.gin"])
    assert "config file 'nowhere.gin' not found" in err


def test_resume_needs_a_run_dir(capsys):
    assert "--resume needs --run-dir" in error_of(capsys, ["train", "--resume"])


@pytest.mark.parametrize(
    "command", [["sample", "/nonexistent", "--steps", "1", "--n", "1", "--out", "x.npy"], ["eval", "/nonexistent"]]
)
def test_not_a_run_directory(capsys, command):
    assert "is not a run directory" in error_of(capsys, command)
