"""`teacher.diffusers` and `velocity.diffusers`: a diffusers model folder read as our drift.

The conversion is held to the closed-form drift of Gaussian data for every prediction type
and noise schedule (a stub ModelMixin that predicts exactly in its own frame), under two
interpolants; tiny random diffusers models load from `save_pretrained` folders and train a
flow map through the command; bad folders are one `flowmap: error:` line.
"""

import json

import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import DiTTransformer2DModel, UNet2DModel  # noqa: E402

from flowmap_components.exact.gaussian import GaussianFlow  # noqa: E402
from flowmap_components.interpolants.linear import Linear  # noqa: E402
from flowmap_components.interpolants.trigonometric import Trigonometric  # noqa: E402
from flowmap_components.teachers.diffusers import DiffusersTeacher  # noqa: E402
from flowmap_components.teachers.diffusers_drift import DiffusersError  # noqa: E402
from flowmap_core import cli, config  # noqa: E402
from tests.components.diffusers_stub import ExactGaussianModel, uniform_levels  # noqa: E402
from tests.conftest import image_data_bindings  # noqa: E402

STUB = "tests.components.diffusers_stub:ExactGaussianModel"
CASES = [
    ("ddpm", "epsilon"),
    ("ddpm", "sample"),
    ("ddpm", "v_prediction"),
    ("edm", "epsilon"),
    ("edm", "v_prediction"),
    ("rectified_flow", "flow"),
    ("rectified_flow", "epsilon"),
    ("rectified_flow", "sample"),
]
SCHEDULERS = {"ddpm": "DDPMScheduler", "edm": "EDMEulerScheduler", "rectified_flow": "FlowMatchEulerDiscreteScheduler"}


def save_stub(folder, schedule: str, prediction: str):
    ExactGaussianModel(
        schedule=schedule, prediction=prediction, alphas_cumprod=uniform_levels(), mean=0.5, std=1.5
    ).save_pretrained(folder)
    scheduler = {"_class_name": SCHEDULERS[schedule], "prediction_type": prediction}
    if schedule == "ddpm":
        scheduler |= {"beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear", "num_train_timesteps": 1000}
    (folder / "scheduler_config.json").write_text(json.dumps(scheduler))


@pytest.mark.parametrize("interpolant", [Linear(), Trigonometric()], ids=["linear", "trigonometric"])
@pytest.mark.parametrize(("schedule", "prediction"), CASES)
def test_drift_is_the_closed_form_for_every_prediction_type(tmp_path, schedule, prediction, interpolant):
    save_stub(tmp_path, schedule, prediction)
    teacher = DiffusersTeacher(path=str(tmp_path), model_class=STUB)
    exact = GaussianFlow(mean=(0.5, 0.5), std=(1.5, 1.5), interpolant=interpolant)
    x = torch.randn(64, 2, dtype=torch.float64) * 2
    s = torch.linspace(0.02, 0.98, 64, dtype=torch.float64)
    drift = teacher.drift(interpolant, x).drift(x, s)
    torch.testing.assert_close(drift, exact.velocity(x, s), rtol=1e-8, atol=1e-8)


def test_teacher_map_is_the_euler_step_of_the_drift(tmp_path):
    save_stub(tmp_path, "rectified_flow", "flow")
    teacher = DiffusersTeacher(path=str(tmp_path), model_class=STUB)
    teacher.check_run(interpolant=Linear(), teacher=teacher)
    student = torch.nn.Linear(1, 1).double()
    from flowmap_core.flow_map import FlowMap

    X = teacher.flow_map(FlowMap(net=student, parameterisation=None), {})
    x, s, t = torch.randn(8, 2, dtype=torch.float64), torch.rand(8, dtype=torch.float64), torch.ones(8).double()
    exact = GaussianFlow(mean=(0.5, 0.5), std=(1.5, 1.5))
    torch.testing.assert_close(X(x, s, t), x + (t - s)[:, None] * exact.velocity(x, s), rtol=1e-8, atol=1e-8)


def test_outside_the_trained_levels_the_drift_is_the_nearest_levels(tmp_path):
    save_stub(tmp_path, "ddpm", "epsilon")
    drift = DiffusersTeacher(path=str(tmp_path), model_class=STUB).drift(Linear(), torch.zeros(()).double())
    low, high = drift.time_range
    assert 0 < low < 0.01 and 0.98 < high < 1  # the linear DDPM levels: rho from 0.01 to ~156
    x = torch.randn(4, 2, dtype=torch.float64)
    at_zero = drift.drift(x, torch.zeros(4, dtype=torch.float64))
    assert torch.isfinite(at_zero).all()
    torch.testing.assert_close(at_zero, drift.drift(x, torch.full((4,), low, dtype=torch.float64)))


def _tiny_unet(folder, prediction: str) -> None:
    UNet2DModel(
        sample_size=28,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8,),
        layers_per_block=1,
        down_block_types=("DownBlock2D",),
        up_block_types=("UpBlock2D",),
        norm_num_groups=4,
    ).save_pretrained(folder / "unet")
    (folder / "scheduler").mkdir()
    scheduler = {"_class_name": "DDPMScheduler", "prediction_type": prediction, "num_train_timesteps": 1000}
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler))


def test_tiny_dit_loads_and_gives_a_finite_drift(tmp_path):
    DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=1,
        out_channels=2,
        num_layers=1,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=10,
        norm_num_groups=1,
    ).save_pretrained(tmp_path)
    teacher = DiffusersTeacher(path=str(tmp_path), prediction="epsilon", schedule="ddpm")
    x = torch.randn(3, 1, 8, 8)
    drift = teacher.drift(Linear(), x).drift(x, torch.rand(3), label=torch.tensor([0, 3, -1]))
    assert drift.shape == x.shape and torch.isfinite(drift).all()


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
def test_train_distils_a_diffusers_unet_with_one_binding(smoke_data, tmp_path, prediction, capsys):
    _tiny_unet(tmp_path / "pipeline", prediction)
    smoke = str(config.GIN_DIR / "smoke" / "fashion_mnist_lsd.gin")
    bindings = [
        *image_data_bindings("fashion_mnist"),
        "train.teacher = @teacher.diffusers()",
        f"teacher.diffusers.path = '{tmp_path / 'pipeline'}'",
        "teacher.diffusers.subfolder = 'unet'",
        "train.steps = 2",
    ]
    argv = ["train", smoke, "--run-dir", str(tmp_path / "run"), "--no-eval", "--no-progress"]
    assert cli.main(argv + [arg for b in bindings for arg in ("--gin", b)]) == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in lines if "loss" in row)


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda folder: folder.mkdir(), "not a diffusers model folder"),
        (lambda folder: (folder.mkdir(), _tiny_unet(folder, "epsilon")), "not a diffusers model folder"),
        (lambda folder: _broken_weights(folder), "could not load"),
        (lambda folder: _unknown_prediction(folder), "unknown prediction type"),
        (lambda folder: None, "is not a folder"),
    ],
    ids=["empty", "pipeline-without-subfolder", "missing-weights", "unknown-prediction", "missing"],
)
def test_bad_folder_is_one_error_line(tmp_path, capsys, make, said):
    folder = tmp_path / "model"
    make(folder)
    smoke = str(config.GIN_DIR / "smoke" / "checkerboard_lsd.gin")
    bindings = ["train.teacher = @teacher.diffusers()", f"teacher.diffusers.path = '{folder}'"]
    argv = ["train", smoke, "--run-dir", str(tmp_path / "run"), "--no-eval", "--no-progress"]
    assert cli.main(argv + [arg for b in bindings for arg in ("--gin", b)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowmap: error: ") and said in lines[0], lines


def _broken_weights(folder) -> None:
    _tiny_unet(folder, "epsilon")
    (folder / "unet" / "config.json").rename(folder / "config.json")  # a config, and no weights beside it


def _unknown_prediction(folder) -> None:
    _tiny_unet(folder, "noise")
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        (folder / "unet" / name).rename(folder / name)
    (folder / "scheduler" / "scheduler_config.json").rename(folder / "scheduler_config.json")


def test_no_diffusers_error_without_a_folder():
    with pytest.raises(DiffusersError, match="is not a folder"):
        DiffusersTeacher(path="/nonexistent/model")


def test_velocity_source_closes_lsd_on_the_checkerboard(tmp_path, capsys):
    save_stub(tmp_path / "model", "rectified_flow", "flow")
    smoke = str(config.GIN_DIR / "smoke" / "checkerboard_lsd.gin")
    bindings = [
        "objective.lsd.velocity = @velocity.diffusers()",
        f"velocity.diffusers.path = '{tmp_path / 'model'}'",
        f"velocity.diffusers.model_class = '{STUB}'",
        "train.steps = 3",
    ]
    argv = ["train", smoke, "--run-dir", str(tmp_path / "run"), "--no-eval", "--no-progress"]
    assert cli.main(argv + [arg for b in bindings for arg in ("--gin", b)]) == 0, capsys.readouterr().err
