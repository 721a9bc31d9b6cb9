"""Test-suite setup: runtime shape checks on, Hypothesis profile, all components registered."""

import os

os.environ.setdefault("FLOWMAP_TYPECHECK", "1")  # before any flowmap module is imported

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

import flowmap_components  # noqa: E402, F401
from flowmap_core import testing  # noqa: E402, F401  (registers the Hypothesis profiles)

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _work_in_a_temporary_directory(tmp_path_factory, monkeypatch) -> None:
    """Relative paths (runs/, stage-one teacher runs of two-stage configs) land in one
    session directory, never in the repository."""
    monkeypatch.chdir(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """A finished smoke run of the LSD experiment (trained once per test session)."""
    from flowmap_core import cli, config

    run_dir = tmp_path_factory.mktemp("smoke") / "lsd"
    smoke = config.GIN_DIR / "smoke" / "checkerboard_lsd.gin"
    assert cli.main(["train", str(smoke), "--run-dir", str(run_dir), "--no-progress", "--no-eval"]) == 0
    return run_dir


SMOKE_DATA = {"fashion_mnist": "gray28", "cifar10": "rgb32", "celeba64": "rgb64", "imagenet256_latent": "rgb32"}
"""The synthetic stand-in (tools/make_smoke_data.py) of each image dataset's shards (ImageNet's
4x32x32 latents: RGB 32x32 images, the same tokens for a patch-based backbone)."""


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory):
    """Synthetic shards and feature nets under runs/smoke_data of the session's directory
    (where every test runs), as the image smoke configs expect them."""
    import importlib.util
    from pathlib import Path

    tool = Path(__file__).resolve().parents[1] / "tools" / "make_smoke_data.py"
    spec = importlib.util.spec_from_file_location("make_smoke_data", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        return module.make(tmp_path_factory.getbasetemp() / "runs" / "smoke_data")
    finally:
        torch.set_num_threads(threads)


def image_data_bindings(name: str) -> list[str]:
    """Bindings that point an image config named `name` at the smoke data (none for others)."""
    shape = next((shape for dataset, shape in SMOKE_DATA.items() if dataset in name), None)
    if shape is None:
        return []
    return [
        f"dataset.shards.url = 'runs/smoke_data/{shape}/train'",
        f"real/dataset.shards.url = 'runs/smoke_data/{shape}/test'",
        f"features.classifier.weights = 'runs/smoke_data/{shape}/feature_net'",
    ]
