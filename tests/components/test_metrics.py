"""The histogram KL estimator on exact samples (its noise floor) and on known-bad ones."""

import math

import pytest
import torch

from flowmap_core import registry

CPU = torch.device("cpu")


def true_samples(name, n, seed=0):
    dataset = registry.build("dataset", name)
    return dataset, dataset.sample(n, generator=torch.Generator().manual_seed(seed), device=CPU, dtype=torch.float64)


@pytest.mark.parametrize("name, floor", [("checkerboard", 0.06), ("gaussian_mixture", 0.2)])
def test_kl_of_exact_samples_is_small(name, floor):
    """The estimator's noise floor: positive (finite samples), small, and twice as many
    samples lower it."""
    dataset, batch = true_samples(name, 200_000)
    metric = registry.build("metric", "histogram_kl")
    kl = metric(batch.x1, dataset)
    assert 0 < kl < floor
    assert metric(true_samples(name, 400_000, seed=1)[1].x1, dataset) < kl


def test_checkerboard_noise_floor_value():
    """About 0.046 at the defaults (200,000 samples, 200 x 200 bins on [-4.5, 4.5]^2)."""
    dataset, batch = true_samples("checkerboard", 200_000)
    assert abs(registry.build("metric", "histogram_kl")(batch.x1, dataset) - 0.046) < 0.005


def test_kl_of_a_gaussian_against_the_checkerboard_is_large():
    dataset = registry.build("dataset", "checkerboard")
    samples = 2 * torch.randn(200_000, 2, generator=torch.Generator().manual_seed(0))
    assert registry.build("metric", "histogram_kl")(samples, dataset) > 0.5


def test_kl_counts_lost_mass():
    """Samples outside the grid still count in the total: half of them lost costs log 2."""
    dataset, batch = true_samples("checkerboard", 200_000)
    metric = registry.build("metric", "histogram_kl", bins=50)  # no empty bins, no floor
    moved = batch.x1.clone()
    moved[::2] = 100.0
    lost = metric(moved, dataset) - metric(batch.x1[1::2], dataset)
    assert lost == pytest.approx(math.log(2), abs=1e-9)


def test_kl_rejects_wrong_shape_and_dataset():
    metric = registry.build("metric", "histogram_kl")
    with pytest.raises(ValueError, match=r"shaped \(n, 2\)"):
        metric(torch.zeros(10, 3), registry.build("dataset", "checkerboard"))
    with pytest.raises(TypeError, match="exact bin probabilities"):
        metric(torch.zeros(10, 2), registry.build("dataset", "gaussian"))
