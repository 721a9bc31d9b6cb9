"""Reliability: exact resume after SIGKILL, checkpoints that do not fit, bad data, bigger-machine options."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from flowmap_core import checkpoint as ckpt
from flowmap_core import config, runs
from flowmap_core.autodiff import jvp
from flowmap_core.trainer import Trainer, TrainingError

SMOKE = str(config.GIN_DIR / "smoke" / "checkerboard_lsd.gin")
REPO = config.GIN_DIR.parent


def flowmap(*args):
    return [sys.executable, "-m", "flowmap_core.cli", "train", SMOKE, *args]


def test_sigkill_at_a_random_step_then_resume_is_bit_identical(tmp_path):
    """Killed with SIGKILL (no chance to checkpoint), resumed from the last periodic
    checkpoint, the run ends with the same weights, EMA and optimiser as one never killed."""
    common = ["--no-progress", "--no-eval", "--gin", "train.steps = 400", "--gin", "train.checkpoint_every = 25"]
    env = {**os.environ, "FLOWMAP_TYPECHECK": "0", "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    kill_after = random.Random(os.getpid()).randint(60, 300)
    process = subprocess.Popen(flowmap("--run-dir", str(killed), *common), cwd=REPO, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        found = ckpt.latest(killed / "checkpoints")
        if found is not None and found.checkpoint.state["step"] >= kill_after:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    stopped = ckpt.latest(killed / "checkpoints").checkpoint.state["step"]
    assert 25 <= stopped < 400, stopped
    subprocess.run(flowmap("--run-dir", str(killed), "--resume", *common), cwd=REPO, env=env, check=True)
    whole = tmp_path / "whole"
    subprocess.run(flowmap("--run-dir", str(whole), *common), cwd=REPO, env=env, check=True)
    for name in ["model.safetensors", "ema.safetensors"]:
        a, b = (load_file(d / "checkpoints" / "step_00000400" / name) for d in (killed, whole))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)), "metrics past the resumed checkpoint are not duplicated"


def test_resume_picks_the_newest_readable_checkpoint_and_says_which(tmp_path, capsys):
    config.parse([SMOKE], ["train.checkpoint_every = 20"])
    Trainer(runs.build_spec(), tmp_path / "run", progress=False).fit()
    newest = ckpt.complete_checkpoints(tmp_path / "run" / "checkpoints")[-1]
    (newest / "model.safetensors").write_bytes(b"not a safetensors file")
    resumed = Trainer(runs.build_spec(), tmp_path / "run", progress=False, resume=True)
    assert resumed.step == 40
    err = capsys.readouterr().err
    assert "passed over an unreadable checkpoint" in err and "step_00000060" in err
    assert "resuming from" in err and "step_00000040" in err


def test_checkpoint_of_another_architecture_names_the_tensor(tmp_path):
    config.parse([SMOKE], ["train.steps = 20"])
    Trainer(runs.build_spec(), tmp_path / "run", progress=False).fit()
    config.parse([SMOKE], ["train.steps = 20", "backbone.mlp.width = 48"])
    mismatch = r"net.hidden.0.weight: checkpoint \(64, (\d+)\) vs model \(48, \1\)"
    with pytest.raises(ckpt.CheckpointError, match=mismatch):
        Trainer(runs.build_spec(), tmp_path / "run", progress=False, resume=True, force=True)


def test_checkpoints_load_without_pickle(tmp_path):
    config.parse([SMOKE], ["train.steps = 20"])
    Trainer(runs.build_spec(), tmp_path / "run", progress=False).fit()
    path = ckpt.complete_checkpoints(tmp_path / "run" / "checkpoints")[-1]
    torch.load(path / "optimizer.pt", weights_only=True)  # raises if anything needs unpickling code
    assert ckpt.load(path).state["step"] == 20


def test_only_the_newest_k_checkpoints_are_kept(tmp_path):
    config.parse([SMOKE], ["train.checkpoint_every = 10", "train.keep_checkpoints = 2"])
    Trainer(runs.build_spec(), tmp_path / "run", progress=False).fit()
    names = [p.name for p in ckpt.complete_checkpoints(tmp_path / "run" / "checkpoints")]
    assert names == ["step_00000050", "step_00000060"]
    assert not list((tmp_path / "run" / "checkpoints").glob(".tmp-*"))


class WrongShape:
    """A dataset whose samples disagree with its declared data_shape."""

    data_shape = (2,)
    num_classes = None

    def __init__(self, dataset, shape=None, dtype=None):
        self.dataset, self.shape, self.dtype = dataset, shape, dtype

    def sample(self, n, *, generator, device, dtype):
        batch = self.dataset.sample(n, generator=generator, device=device, dtype=dtype)
        x1 = batch.x1 if self.shape is None else torch.zeros((n, *self.shape), dtype=dtype)
        return type(batch)(x1=x1 if self.dtype is None else x1.to(self.dtype))


@pytest.mark.parametrize(
    "shape, dtype, message",
    [
        ((3,), None, r"batch of shape \(256, 3\), but the backbone was built for data of shape \(2,\)"),
        (None, torch.int64, "gave torch.int64 data; the backbone needs floating point"),
    ],
)
def test_data_of_the_wrong_shape_or_dtype(shape, dtype, message):
    config.parse([SMOKE])
    trainer = Trainer(runs.build_spec(), progress=False)
    object.__setattr__(trainer.spec, "dataset", WrongShape(trainer.spec.dataset, shape, dtype))
    with pytest.raises(TrainingError, match=message):
        trainer.draw()


def test_points_dataset_from_a_file_and_its_errors(tmp_path):
    good = tmp_path / "points.npy"
    np.save(good, np.random.default_rng(0).normal(size=(100, 3)))
    config.parse([SMOKE], ["train.dataset = @dataset.points()", f"dataset.points.path = '{good}'"])
    trainer = Trainer(runs.build_spec(), progress=False)
    assert trainer.net.data_shape == (3,)
    trainer.optimise(trainer.draw())
    from flowmap_components.datasets.points import Points

    with pytest.raises(ValueError, match="there is no file at"):
        Points(path=str(tmp_path / "missing.npy"))
    corrupt = tmp_path / "corrupt.npy"
    corrupt.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="is not a readable .npy array"):
        Points(path=str(corrupt))
    with pytest.raises(ValueError, match="cannot open 'nosuchprotocol://x.npy'"):
        Points(path="nosuchprotocol://x.npy")


def test_bfloat16_autocast_trains():
    config.parse([SMOKE], ["train.precision = 'bfloat16'", "train.steps = 5"])
    trainer = Trainer(runs.build_spec(), progress=False)
    results = [trainer.optimise(trainer.draw()) for _ in range(5)]
    assert all(not r.skipped for r in results)


def test_compiled_backbone_takes_the_same_steps():
    """`train.compile` wraps the backbone in torch.compile; the JVP of LSD goes through it."""
    losses = {}
    for compiled in (False, True):
        config.parse([SMOKE], [f"train.compile = {compiled}", "train.steps = 3"])
        trainer = Trainer(runs.build_spec(), progress=False)
        losses[compiled] = [trainer.optimise(trainer.draw()).loss for _ in range(3)]
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)


def test_jvp_through_attention_uses_the_math_kernel():
    """Fused attention kernels have no forward-mode derivative; autodiff.jvp selects the math one."""
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn((3, 2, 4, 8, 16), generator=g)
    tangent = torch.randn((2, 4, 8, 16), generator=g)

    def attention(x):
        return F.scaled_dot_product_attention(x, k, v)

    def by_hand(x):
        weights = torch.softmax(x @ k.transpose(-1, -2) / 16**0.5, dim=-1)
        return weights @ v

    out, derivative = jvp(attention, (q,), (tangent,))
    _, expected = torch.func.jvp(by_hand, (q,), (tangent,))
    torch.testing.assert_close(derivative, expected, rtol=1e-4, atol=1e-5)
