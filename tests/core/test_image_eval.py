"""Evaluation of image runs: flow-map steps beside ODE baselines at equal NFE, grids, held-out data."""

import numpy as np
import pytest
import torch

from flowmap_components.datasets.shards import Shards
from flowmap_core import cli, config
from flowmap_core.evaluation import EvalSpec, real_samples
from flowmap_core.figures import tile

SMOKE = str(config.GIN_DIR / "smoke" / "fashion_mnist_lsd.gin")


def test_eval_scores_the_map_and_ode_baselines_at_equal_nfe_and_writes_grids(smoke_data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli.main(["train", SMOKE, "--run-dir", str(run_dir), "--no-progress", "--no-eval"]) == 0
    capsys.readouterr()
    assert cli.main(["eval", str(run_dir)]) == 0
    table = capsys.readouterr().out
    assert "| weights, sampler (none named: flow map) | NFE 1 | NFE 2 |" in table
    rows = {
        line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith(("| ema", "| online"))
    }
    assert set(rows) == {
        "ema_0.999",
        "ema_0.999, euler ODE",
        "ema_0.999, heun ODE",
        "online",
        "online, euler ODE",
        "online, heun ODE",
    }
    assert rows["ema_0.999, heun ODE"].split(" | ")[1] == "—", "Heun has no 1-NFE sampler"
    report = (run_dir / "report.md").read_text()
    for figure in ["samples_nfe1.png", "samples_nfe2.png", "scores.png"]:
        assert f"({figure})" in report and (run_dir / figure).is_file()


def test_a_streamed_dataset_needs_held_out_real_data(smoke_data):
    dataset = Shards(url="runs/smoke_data/gray28/train")
    spec = EvalSpec(metric=object(), sampler=object(), num_samples=8)
    with pytest.raises(ValueError, match=r"evaluate\.real is required for a streamed dataset"):
        real_samples(spec, dataset, torch.Generator())
    held_out = EvalSpec(
        metric=object(), sampler=object(), num_samples=8, real=Shards(url="runs/smoke_data/gray28/test")
    )
    assert torch.equal(real_samples(held_out, dataset, torch.Generator()), held_out.real.read(8).x1)


def test_tile_lays_images_out_row_by_row_with_gaps():
    images = torch.stack([torch.full((1, 2, 3), value) for value in (-1.0, 0.0, 1.0)])
    canvas = tile(images, columns=2)
    assert canvas.shape == (2 * 3 - 1, 2 * 4 - 1, 1)
    assert np.all(canvas[:2, :3] == 0) and np.all(canvas[:2, 4:] == 0.5) and np.all(canvas[3:, :3] == 1)
    assert np.all(canvas[2] == 1) and np.all(canvas[:, 3] == 1), "white gaps between images"


class Recording:
    """A metric that keeps what it was given."""

    name = "recording"

    def __init__(self):
        self.seen = []

    def __call__(self, samples, dataset):
        self.seen.append(samples)
        return 0.0


def test_images_are_quantised_to_8_bits_before_scoring():
    """evaluate.quantise (default on): images are clipped to [-1, 1] and rounded to k / 127.5 - 1,
    the 8-bit levels pytorch-fid and clean-fid see; 2D points are scored as drawn; off, images too."""
    images = 1.2 * (2 * torch.rand(16, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 1)
    metric = Recording()
    EvalSpec(metric=metric, sampler=object()).score(images, None)
    levels = (metric.seen[-1] + 1) * 127.5
    torch.testing.assert_close(levels, levels.round(), rtol=0, atol=1e-9)
    assert levels.min() == 0 and levels.max() == 255
    assert (metric.seen[-1] - images.clamp(-1, 1)).abs().max() <= 0.5 / 127.5 + 1e-12
    EvalSpec(metric=metric, sampler=object(), quantise=False).score(images, None)
    assert torch.equal(metric.seen[-1], images)
    points = torch.randn(16, 2, dtype=torch.float64)
    EvalSpec(metric=metric, sampler=object()).score(points, None)
    assert torch.equal(metric.seen[-1], points)
