"""`warm_start.run`: the student starts as the Euler map of a flow-matching run.

Folding the second time into the first makes every backbone compute at (s, t) what it
computed at (s, s); through the trainer, a student warm-started from a flow-matching run
has V_{s,t} = b_s of that run at step 0 (X_{s,t} = x + (t - s) b_s(x)), on and off the
diagonal, and its EMA starts there too.
"""

import pytest
import torch

from flowmap_components.backbones.dit import DiT
from flowmap_components.backbones.mlp import MLP
from flowmap_components.backbones.unet import UNet
from flowmap_core import cli, config, runs
from flowmap_core.trainer import Trainer
from tests.components.test_unet import TINY, off_zero_init

BACKBONES = {
    "mlp": lambda: MLP(data_shape=(2,), heads=2, width=16, depth=2, octaves=3),
    "unet": lambda: UNet(data_shape=(1, 8, 8), heads=2, **TINY),
    "dit": lambda: DiT(data_shape=(1, 8, 8), heads=2, patch=2, width=8, depth=1, attention_heads=1, octaves=3),
}


def net_and_inputs(name: str):
    """Backbone `name` with no zero-initialised layer, in float64, and an input (x, s, t)."""
    net = off_zero_init(BACKBONES[name]().double())
    x = torch.randn((5, *net.data_shape), dtype=torch.float64)
    return net, x, torch.rand(5).double(), torch.rand(5).double()


@pytest.mark.parametrize("name", BACKBONES)
def test_folding_the_second_time_reads_t_as_s(name):
    net, x, s, t = net_and_inputs(name)
    diagonal = net(x, s, s)
    assert not torch.allclose(net(x, s, t), diagonal)
    net.fold_second_time()
    torch.testing.assert_close(net(x, s, t), diagonal, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(net(x, s, s), diagonal, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", BACKBONES)
def test_scaling_the_output_scales_every_head(name):
    net, x, s, t = net_and_inputs(name)
    before = net(x, s, t)
    net.scale_output(-2 / torch.pi)
    torch.testing.assert_close(net(x, s, t), -2 / torch.pi * before, rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def fm_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("warm") / "fm"
    smoke = str(config.GIN_DIR / "smoke" / "checkerboard_fm.gin")
    argv = ["train", smoke, "--run-dir", str(run_dir), "--no-eval", "--no-progress", "--gin", "train.steps = 20"]
    assert cli.main(argv) == 0
    return run_dir


@pytest.mark.parametrize("scale", [1.0, -0.5])
def test_warm_started_student_is_the_euler_map_of_the_run_at_step_0(fm_run, scale):
    """With `output_scale` c the student starts at c times that velocity: V_{s,t} = c b_s."""
    smoke = str(config.GIN_DIR / "smoke" / "checkerboard_lsd.gin")
    bindings = [
        "train.warm_start = @warm_start.run()",
        f"warm_start.run.run_dir = '{fm_run}'",
        f"warm_start.run.output_scale = {scale}",
    ]
    with config.isolated():
        config.parse([smoke], bindings)
        trainer = Trainer(runs.build_spec(), progress=False)
    with config.isolated():
        fm = runs.open_run(fm_run)
        velocity = runs.flow_maps(fm, [runs.headline_weights(fm)])[runs.headline_weights(fm)]
    x = torch.randn(64, 2)
    s, t = torch.rand(64), torch.rand(64)
    b_s = velocity.velocity(x, s)
    assert b_s.abs().mean() > 1e-3  # the run learned something to start from
    for X in (trainer.student, trainer.flow_map(trainer.ema.nets[0.999])):
        torch.testing.assert_close(X.mean_velocity(x, s, t), scale * b_s, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(X(x, s, t), x + (t - s)[:, None] * scale * b_s, rtol=1e-5, atol=1e-5)


def test_another_backbone_is_one_error_line(fm_run, capsys, tmp_path):
    smoke = str(config.GIN_DIR / "smoke" / "checkerboard_lsd.gin")
    bindings = [
        "train.warm_start = @warm_start.run()",
        f"warm_start.run.run_dir = '{fm_run}'",
        "backbone.mlp.width = 32",
    ]
    argv = ["train", smoke, "--run-dir", str(tmp_path / "run"), "--no-eval", "--no-progress"]
    assert cli.main(argv + [a for b in bindings for a in ("--gin", b)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowmap: error: warm_start.run: the backbone of"), lines


def test_a_safetensors_file_of_a_named_backbone_is_a_teacher(fm_run, tmp_path):
    from safetensors.torch import save_file

    with config.isolated():
        fm = runs.open_run(fm_run)
        net = fm.ema_nets()[runs.headline_weights(fm)]
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "fm.safetensors")
        velocity = runs.flow_maps(fm, [runs.headline_weights(fm)])[runs.headline_weights(fm)]
    smoke = str(config.GIN_DIR / "smoke" / "checkerboard_lsd.gin")
    bindings = [
        "train.teacher = @teacher.weights_file()",
        f"teacher.weights_file.path = '{tmp_path / 'fm.safetensors'}'",
        "teacher.weights_file.backbone = @backbone.mlp",
    ]
    with config.isolated():
        config.parse([smoke], bindings)
        trainer = Trainer(runs.build_spec(), progress=False)
    x, s = torch.randn(32, 2), torch.rand(32)
    torch.testing.assert_close(trainer.teacher.velocity(x, s), velocity.velocity(x, s))
