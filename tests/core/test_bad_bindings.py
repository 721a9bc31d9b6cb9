"""Bad input is one `flowmap: error:` line, never a traceback or a silently wrong run.

A bounded Hypothesis property fuzzes the gin parameters of every registered configurable
(and `train`): it binds a bad value (negative, zero, NaN, inf, huge, a wrong string, a class
where an instance is expected) on the smoke config, builds the run and takes one step, and
requires either success or one clean line that names the parameter or its configurable.
A newly registered component is fuzzed with no new test. The examples below are tested
through the command itself.
"""

import inspect
import math

import attrs
import gin
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowmap_core import cli, config, registry, runs
from flowmap_core.spec import TrainSpec
from flowmap_core.trainer import Trainer

SMOKE = "smoke/checkerboard_lsd.gin"
QUICK = ["train.steps = 2", "train.batch_size = 32"]

# ------------------------------------------------------------------ examples through the command

EXAMPLES = [
    ("optimizer.adam.lr = -1", "optimizer.adam.lr"),
    ("optimizer.adam.lr = 'fast'", "optimizer.adam.lr"),
    ("backbone.mlp.width = 0", "backbone.mlp.width"),
    ("backbone.mlp.activation = 'swish9'", "backbone.mlp.activation"),
    ("train.interpolant = @interpolant.linear", "train.interpolant"),
    ("train.device = 'cuda:7'", "train.device"),
    ("train.ema_rates = (1.5,)", "train.ema_rates"),
    ("train.steps = 2.5", "train.steps"),
    ("train.grad_clip = -1.0", "train.grad_clip"),
]


def one_error_line(capsys, argv: list[str]) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("flowmap: training")]
    assert len(lines) == 1 and lines[0].startswith("flowmap: error: "), err
    return lines[0]


@pytest.mark.parametrize(("binding", "named"), EXAMPLES)
def test_each_example_is_one_line_naming_the_binding(binding, named, capsys, tmp_path):
    run_dir = tmp_path / "run"
    line = one_error_line(capsys, ["train", SMOKE, "--no-eval", "--run-dir", str(run_dir), "--gin", binding])
    assert named in line
    assert not (run_dir / "checkpoints").exists()


def test_psd_fraction_outside_the_unit_interval(capsys, tmp_path):
    bindings = ["--gin", "train.objective = @objective.psd()", "--gin", "objective.psd.h = 2.0"]
    line = one_error_line(capsys, ["train", SMOKE, "--no-eval", "--run-dir", str(tmp_path), *bindings])
    assert "objective.psd.h = 2.0" in line and "(0, 1)" in line


@pytest.mark.parametrize("teacher", ["online", "ema"])
def test_esd_with_full_stopgrad_and_the_online_teacher_refuses_to_start(teacher, capsys, tmp_path):
    """ESD's update under stopgrad.full has real part 1 + (t - s)^2 w (w + k.v) on a mode
    exp(i(w s + k.x)), negative once (t - s)|k.v| > 2: with the online teacher it diverges, so
    it is refused with the reason and the policies that work; an EMA teacher is not refused."""
    argv = ["train", "smoke/checkerboard_esd.gin", "--no-eval", "--run-dir", str(tmp_path / "run")]
    argv += ["--gin", "objective.esd.stopgrad = @stopgrad.full()", "--gin", f"train.teacher = @teacher.{teacher}()"]
    if teacher == "ema":
        assert cli.main([*argv, "--gin", "train.steps = 2", "--no-progress"]) == 0
        return
    line = one_error_line(capsys, argv)
    assert "1 + (t - s)^2 w (w + k.v)" in line and "(t - s)|k.v| > 2" in line
    assert "@stopgrad.teacher()" in line and "@stopgrad.mean_velocity()" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_class_hint_says_to_add_parentheses(capsys, tmp_path):
    binding = "train.interpolant = @interpolant.linear"
    line = one_error_line(capsys, ["train", SMOKE, "--no-eval", "--run-dir", str(tmp_path), "--gin", binding])
    assert "write @interpolant.linear() with parentheses" in line


def test_a_missing_device_names_the_devices_there_are(capsys, tmp_path):
    line = one_error_line(
        capsys, ["train", SMOKE, "--no-eval", "--run-dir", str(tmp_path), "--gin", "train.device = 'cuda:99'"]
    )
    assert "'cuda:99'" in line and "cpu" in line


@pytest.mark.parametrize("cycle", ["self", "pair"])
def test_a_config_that_includes_itself(cycle, capsys, tmp_path):
    a, b = tmp_path / "a.gin", tmp_path / "b.gin"
    a.write_text(f"include '{a if cycle == 'self' else b}'\n")
    b.write_text(f"include '{a}'\n")
    line = one_error_line(capsys, ["train", str(a), "--no-eval", "--run-dir", str(tmp_path / "run")])
    assert "includes itself" in line and "a.gin" in line


def test_an_include_of_a_missing_file(capsys, tmp_path):
    config_file = tmp_path / "a.gin"
    config_file.write_text("include 'nope/missing.gin'\n")
    line = one_error_line(capsys, ["train", str(config_file), "--no-eval", "--run-dir", str(tmp_path / "run")])
    assert "nope/missing.gin" in line and "a.gin" in line


@pytest.mark.parametrize("when", ["building", "in the first step"])
def test_the_corrected_rerun_is_not_blocked(when, capsys, tmp_path):
    run_dir = tmp_path / "run"
    binding = "optimizer.adam.lr = -1" if when == "building" else "objective.split.diagonal = 0"
    argv = ["train", SMOKE, "--no-eval", "--no-progress", "--run-dir", str(run_dir), *gin_args([binding])]
    line = one_error_line(capsys, argv)
    assert binding.split(" = ")[0] in line
    assert not (run_dir / "checkpoints").exists()
    assert cli.main(["train", SMOKE, "--no-eval", "--no-progress", "--run-dir", str(run_dir), *gin_args(QUICK)]) == 0


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_debug_shows_the_traceback(how, monkeypatch, tmp_path):
    argv = ["train", SMOKE, "--no-eval", "--run-dir", str(tmp_path), "--gin", "optimizer.adam.lr = -1"]
    if how == "flag":
        argv = ["--debug", *argv]
    else:
        monkeypatch.setenv("FLOWMAP_TRACEBACK", "1")
    with pytest.raises(ValueError, match="optimizer.adam.lr must be positive"):
        cli.main(argv)


def gin_args(bindings: list[str]) -> list[str]:
    return [arg for binding in bindings for arg in ("--gin", binding)]


# ------------------------------------------------------------------ the fuzz


def attempt(binding: str | None = None, raw: tuple[str, object] | None = None) -> str | None:
    """Build the smoke run with `binding` (or the value `raw` bound directly, for NaN, which gin
    cannot write) and take one step: None if that works, else the one line the command prints.
    An error the command would show as a traceback is raised."""
    try:
        config.parse([SMOKE], [*QUICK, *([binding] if binding else [])])
        if raw is not None:
            with gin.unlock_config():
                gin.bind_parameter(*raw)
        trainer = Trainer(runs.build_spec(), progress=False)
        trainer.optimise(trainer.draw())
    except Exception as error:
        line = config.error_line(error)
        if line is None:
            raise
        return line
    return None


def _parameters(cls: type) -> list[str]:
    if attrs.has(cls):
        return [field.alias or field.name for field in attrs.fields(cls) if field.init]
    skip = {"self", "params", "data_shape", "heads"}  # what the trainer passes itself
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in inspect.signature(cls).parameters.values() if p.kind in kinds and p.name not in skip]


def targets() -> list[tuple[str, str]]:
    """(configurable, parameter) for `train` and every registered component."""
    found = [("train", name) for name in _parameters(TrainSpec)]
    for fam in registry.families():
        for name, cls in sorted(fam.members.items()):
            found += [(f"{fam.name}.{name}", p) for p in _parameters(cls)]
    return found


def used_targets() -> list[tuple[str, str]]:
    """The targets among the configurables the smoke run binds (the ones that matter to it)."""
    config.parse([SMOKE], QUICK)
    bound = {selector for (_, selector) in gin.config._CONFIG}
    gin.clear_config()  # runs at collection: unlock gin, so later test modules can still register components
    return [(c, p) for c, p in targets() if c in bound or c == "train"]


BAD = ["-1", "0", "-1.5", "1e999", "-1e999", "1e300", "'wrong'", "''", "@interpolant.linear", "nan"]


def check(configurable: str, parameter: str, bad: str) -> None:
    """The property: a bad value is a run that works, or one line naming what was wrong."""
    if bad == "nan":
        line = attempt(raw=(f"{configurable}.{parameter}", math.nan))
    else:
        line = attempt(f"{configurable}.{parameter} = {bad}")
    if line is None:
        return
    assert "\n" not in line and line.strip(), line
    assert parameter in line or configurable in line, line


@settings(max_examples=200, deadline=None)
@given(target=st.sampled_from(used_targets()), bad=st.sampled_from(BAD))
def test_fuzz_the_bindings_the_smoke_run_uses(target, bad):
    check(*target, bad)


@settings(max_examples=300, deadline=None)
@given(target=st.sampled_from(targets()), bad=st.sampled_from(BAD))
def test_fuzz_every_registered_configurable(target, bad):
    check(*target, bad)


def test_the_fuzz_fails_without_the_validators():
    """The control: with attrs validators off, `train.ema_rates = (1.5,)` reaches the EMA's own
    check and is a traceback, and the property fails on it."""
    ema = st.sampled_from([("train", "ema_rates")])

    @settings(max_examples=10, deadline=None, database=None)
    @given(target=ema, bad=st.sampled_from(["(1.5,)", "(-1,)"]))
    def fuzz(target, bad):
        check(*target, bad)

    fuzz()  # with the validators: clean lines
    with attrs.validators.disabled(), pytest.raises(ValueError, match="EMA rates must be in"):
        fuzz()


# ------------------------------------------------------------------------ bad files


def _copy_of(smoke_run, tmp_path):
    import shutil

    shutil.copytree(smoke_run, tmp_path / "run")
    return tmp_path / "run"


def test_an_empty_config_names_what_is_missing(capsys, tmp_path):
    (tmp_path / "empty.gin").write_text("")
    line = one_error_line(capsys, ["train", str(tmp_path / "empty.gin"), "--run-dir", str(tmp_path / "run")])
    assert "Required bindings for `train` not provided" in line and "'dataset'" in line


def test_a_run_whose_only_checkpoint_is_truncated(smoke_run, capsys, tmp_path):
    run_dir = _copy_of(smoke_run, tmp_path)
    for step_dir in sorted((run_dir / "checkpoints").iterdir()):
        weights = step_dir / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    line = one_error_line(capsys, ["eval", str(run_dir)])
    assert str(run_dir) in line and "checkpoint" in line


def test_a_run_directory_from_another_version_of_a_component(smoke_run, capsys, tmp_path):
    """Its config.gin binds a parameter today's component does not have."""
    run_dir = _copy_of(smoke_run, tmp_path)
    config_file = run_dir / "config.gin"
    config_file.write_text(config_file.read_text() + "\nobjective.lsd.retired_option = 3\n")
    line = one_error_line(capsys, ["eval", str(run_dir)])
    assert "retired_option" in line and "config.gin" in line


def test_a_binding_the_run_never_reads_is_warned_about(capsys, tmp_path):
    bindings = [*QUICK, "backbone.unet.channels = 4", "evaluate.num_samples = 500"]
    argv = ["train", SMOKE, "--no-eval", "--run-dir", str(tmp_path / "run")]
    assert cli.main(argv + [a for b in bindings for a in ("--gin", b)]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("flowmap: warning:")]
    assert warnings == ["flowmap: warning: backbone.unet.channels is bound, but this run never reads it"], err
