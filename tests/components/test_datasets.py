"""Every registered dataset: shapes, determinism, labels; exact bin probabilities where known."""

import pytest
import torch

from flowmap_components.datasets.scaled import Scaled
from flowmap_components.metrics.histogram_kl import HistogramKL
from flowmap_core import data, registry
from flowmap_core.evaluation import EvalSpec
from flowmap_core.protocols import DensityDataset, StreamRequest
from tests.instances import instance, instances

CPU = torch.device("cpu")


def sample(dataset, n, seed=0):
    """The first batch the trainer would draw: `sample` from memory, or the stream's first."""
    request = StreamRequest(batch_size=n, seed=seed)
    return next(data.batches(dataset, request, torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize("name, dataset", instances("dataset"))
def test_dataset_contract(name, dataset):
    batch = sample(dataset, 257)
    assert batch.x1.shape == (257, *dataset.data_shape) and batch.x1.dtype == torch.float32
    assert torch.equal(batch.x1, sample(dataset, 257).x1), "same generator seed, same data"
    assert not torch.equal(batch.x1, sample(dataset, 257, seed=1).x1)
    if dataset.num_classes is None:
        assert batch.label is None
    else:
        assert batch.label.shape == (257,) and batch.label.dtype == torch.int64
        assert 0 <= batch.label.min() and batch.label.max() < dataset.num_classes


def density_datasets():
    return [pytest.param(d, id=n) for n, d in instances("dataset") if isinstance(d, DensityDataset)]


@pytest.mark.parametrize("dataset", density_datasets())
def test_bin_probabilities_match_sample_frequencies(dataset):
    edges = torch.linspace(-6, 6, 13, dtype=torch.float64)
    p = dataset.bin_probabilities(edges, edges)
    assert abs(p.sum().item() - 1) < 1e-6
    points = sample(dataset, 400_000).x1.double()
    counts = torch.histogramdd(points, bins=[edges, edges]).hist
    expected = p * points.shape[0]
    used = expected > 0
    # Pearson chi-square over the bins with mass: mean ~ dof, sd ~ sqrt(2 dof)
    chi2 = ((counts[used] - expected[used]) ** 2 / expected[used]).sum().item()
    dof = int(used.sum()) - 1
    assert chi2 < dof + 6 * (2 * dof) ** 0.5
    assert counts[~used].sum() == 0


def test_checkerboard_is_the_official_one():
    board = registry.build("dataset", "checkerboard")
    points = sample(board, 100_000).x1
    assert points.abs().max() <= 4
    cell = torch.floor(points / 2).long() + 2  # 4 x 4 grid of cells of side 2
    assert (((cell[:, 0] + cell[:, 1]) % 2) == 0).all(), "only the cells of one colour are filled"
    labels = sample(board, 100_000).label
    counts = torch.bincount(labels, minlength=8).double() / 100_000
    assert (counts - 1 / 8).abs().max() < 0.01


def test_mixture_rejects_bad_weights():
    with pytest.raises(ValueError, match="weights has 2 entries for 8 components"):
        registry.build("dataset", "gaussian_mixture", weights=(1.0, 2.0))


def test_scaled_data_is_scored_in_the_datasets_own_units():
    board = registry.build("dataset", "checkerboard")
    scaled = Scaled(dataset=board, scale=0.4)
    batch, plain = sample(scaled, 1000), sample(board, 1000)
    assert torch.equal(batch.x1, 0.4 * plain.x1) and torch.equal(batch.label, plain.label)
    spec = EvalSpec(metric=HistogramKL(), sampler=object())
    points = sample(board, 50_000, seed=3).x1
    in_own_units = spec.score(points, board)
    assert spec.score(0.4 * points, scaled) == pytest.approx(in_own_units, abs=1e-12)
    assert spec.score(0.4 * points, board) > in_own_units + 1, "undecoded, the same samples score far worse"
    assert spec.card(scaled, 50_000, images=False) == spec.card(board, 50_000, images=False)


def test_scaled_refuses_a_stream():
    with pytest.raises(TypeError, match="drawn from memory"):
        Scaled(dataset=instance("dataset", "shards"), scale=0.5)
