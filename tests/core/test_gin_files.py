"""Every .gin file in the repository parses and builds a trainer (zero steps).

Experiments and smoke files are complete on their own. A base, dataset or method file
is parsed after the other parts it needs (so its own bindings win) and built with them,
with a step budget (which experiments set).
"""

import pytest

from flowmap_core import config, runs
from flowmap_core.trainer import Trainer
from tests.conftest import image_data_bindings

ALL = sorted(config.GIN_DIR.rglob("*.gin"))
# Two-stage configs train their stage-one run when it is missing; build them with the
# smoke teachers (trained once per session) instead of full-budget ones.
SMOKE_TEACHERS = [
    "velocity.pretrained.run_dir = 'runs/teachers/smoke_checkerboard_fm'",
    "velocity.pretrained.config = 'smoke/checkerboard_fm.gin'",
    "teacher.pretrained.run_dir = 'runs/teachers/smoke_checkerboard_lsd'",
    "teacher.pretrained.config = 'smoke/checkerboard_lsd.gin'",
]
IMAGE_TEACHERS = [  # the same for image configs: the smoke Fashion-MNIST flow-matching run
    "velocity.pretrained.run_dir = 'runs/teachers/smoke_fashion_mnist_fm'",
    "velocity.pretrained.config = 'smoke/fashion_mnist_fm.gin'",
    "warm_start.run.run_dir = 'runs/teachers/smoke_fashion_mnist_fm'",
    "warm_start.run.config = 'smoke/fashion_mnist_fm.gin'",
]
PARTS = {"base": "base/train.gin", "datasets": "datasets/checkerboard.gin", "methods": "methods/lsd.gin"}


def complements(path):
    """The files to parse before `path` so that the result is a complete config."""
    folder = path.relative_to(config.GIN_DIR).parts[0]
    if folder not in PARTS:
        return []
    return [part for name, part in PARTS.items() if name != folder]


def test_there_are_configs_for_every_method_and_dataset():
    names = {p.relative_to(config.GIN_DIR).as_posix() for p in ALL}
    for method in ["fm", "lsd", "esd", "psd_m", "psd_u"]:
        assert f"methods/{method}.gin" in names
        assert f"experiments/checkerboard_{method}.gin" in names
        assert f"smoke/checkerboard_{method}.gin" in names
    assert {"datasets/checkerboard.gin", "datasets/gaussian_mixture.gin"} <= names


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.relative_to(config.GIN_DIR).as_posix())
def test_gin_file_parses_and_builds(path, smoke_data):
    extra = ["train.steps = 1"] if complements(path) else []  # experiments set the budget
    extra += image_data_bindings(path.stem)  # image configs read the synthetic stand-in of their data
    teachers = SMOKE_TEACHERS + (IMAGE_TEACHERS if "fashion_mnist" in path.stem else [])
    if path.parent.name == "experiments":  # a full-size student does not fit a smoke teacher's weights
        teachers = [*teachers, "train.warm_start = None"]
    config.parse([*complements(path), path], extra + teachers)
    trainer = Trainer(runs.build_spec(), progress=False)
    assert trainer.step == 0
    runs.build_eval_spec()
