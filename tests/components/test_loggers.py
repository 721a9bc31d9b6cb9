"""`train.logger`: a run logs its training scalars, config, scores and figures to TensorBoard
(read back from the event files) or to W&B offline (where the `wandb` extra is installed)."""

import json
import shutil

import pytest

from flowmap_core import cli, config

SMOKE = str(config.GIN_DIR / "smoke" / "checkerboard_lsd.gin")
QUICK = ["train.steps = 20", "train.log_every = 10", "evaluate.num_samples = 2000", "evaluate.step_counts = (1, 2)"]


def train(run_dir, logger: str) -> None:
    bindings = [*QUICK, f"train.logger = @logger.{logger}()"]
    argv = ["train", SMOKE, "--run-dir", str(run_dir), "--no-progress"]
    assert cli.main(argv + [a for b in bindings for a in ("--gin", b)]) == 0


def test_tensorboard_events_hold_the_loss_the_scores_and_a_figure(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tmp_path / "run", "tensorboard")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    losses = events.Scalars("train/loss")
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [e.step for e in losses] == [r["step"] for r in logged]
    assert [e.value for e in losses] == pytest.approx([r["loss"] for r in logged], rel=1e-6)
    scores = [tag for tag in tags["scalars"] if not tag.startswith("train/")]
    assert scores and all(events.Scalars(tag)[0].step == 20 for tag in scores)
    assert "figures/samples.png" in tags["images"]
    image = events.Images("figures/samples.png")[0]
    assert image.step == 20 and image.width > 0
    assert any("operative_config" in tag for tag in events.summary_metadata)


def test_a_resumed_run_drops_the_events_after_its_checkpoint(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    argv = ["train", SMOKE, "--run-dir", str(run_dir), "--no-progress", "--no-eval"]
    bindings = [*QUICK, "train.logger = @logger.tensorboard()", "train.checkpoint_every = 10"]
    flags = [a for b in bindings for a in ("--gin", b)]
    assert cli.main(argv + flags) == 0
    shutil.rmtree(run_dir / "checkpoints" / "step_00000020")  # as if it stopped after step 10's checkpoint
    assert cli.main(argv + flags + ["--resume"]) == 0
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [10, 20]  # step 20 once, from the resumed run


def test_wandb_logs_offline_into_the_run_directory(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    train(tmp_path / "run", "wandb")
    files = list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len({file.name for file in files}) == 1  # training and evaluation: one W&B run id
    data = b"".join(file.read_bytes() for file in files)
    assert b"train/loss" in data and b"figures/samples.png" in data
