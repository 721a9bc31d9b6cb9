"""Flow-map error metrics on known cases: ~0 at the exact map, the perturbation's size off it;
sliced Wasserstein: 0 on identical sets, |m| / sqrt(d) between N(0, I) and N(m, I)."""

import math

import numpy as np
import pytest
import torch

from flowmap_components.datasets.gaussian import Gaussian
from flowmap_components.exact.gaussian import GaussianFlow
from flowmap_components.exact.gaussian_mixture import GaussianMixtureFlow
from flowmap_components.metrics.flow_map_error import (
    SlicedWasserstein,
    flow_map_error_grid,
    plot_error_grid,
    sampling_error,
    sliced_wasserstein,
)
from flowmap_components.samplers.flow_map import FlowMapSampler
from flowmap_core import testing

MIXTURE = GaussianMixtureFlow(means=((-1.5, 0.0), (1.5, 0.5)), stds=(0.4, 0.6))
TIMES = (0.0, 0.25, 0.5, 0.75, 1.0)


def test_exact_map_has_no_error_on_the_grid(tmp_path):
    grid = flow_map_error_grid(MIXTURE.flow_map, MIXTURE, times=TIMES, num_samples=64, dtype=torch.float64)
    assert len(grid.pairs()) == 10
    assert np.isnan(grid.error[2, 1]) and np.isnan(grid.error[1, 1])
    assert max(e for _, _, e, _ in grid.pairs()) < 1e-16
    plot_error_grid(tmp_path / "grid.png", grid)
    assert (tmp_path / "grid.png").stat().st_size > 1000


def test_perturbed_map_error_is_the_perturbation_squared():
    """X' = X* + (t - s) a phi with E phi^2 = 1 per dimension: the error is about a^2 (t - s)^2 d."""
    amplitude = 0.05
    exact = GaussianFlow()
    perturbed = testing.PerturbedFlow(exact, amplitude)
    grid = flow_map_error_grid(perturbed.flow_map, exact, times=TIMES, num_samples=4000, dtype=torch.float64)
    for s, t, error, _ in grid.pairs():
        expected = amplitude**2 * (t - s) ** 2 * 2
        assert 0.7 * expected < error < 1.3 * expected, (s, t, error, expected)


def test_exact_composition_has_no_sampling_error_and_perturbed_has_some():
    sampler = FlowMapSampler()
    exact = sampling_error(MIXTURE.flow_map, MIXTURE, sampler, step_counts=(1, 4), num_samples=256, dtype=torch.float64)
    assert max(mean for mean, _ in exact.values()) < 1e-14
    off = testing.PerturbedFlow(GaussianFlow(), 0.05)
    worse = sampling_error(off.flow_map, GaussianFlow(), sampler, step_counts=(1, 4), num_samples=2000)
    for mean, standard_error in worse.values():
        assert mean > 1e-4 and mean > 10 * standard_error


def test_sliced_wasserstein_of_identical_sets_is_zero():
    x = torch.randn(500, 3)
    assert sliced_wasserstein(x, x.clone()) == 0.0
    assert sliced_wasserstein(x, torch.full_like(x, math.nan)) == math.inf


@pytest.mark.parametrize("d", [2, 16])
def test_sliced_wasserstein_of_shifted_gaussians_is_the_closed_form(d):
    """SW_2(N(0, I), N(m, I)) = |m| / sqrt(d); at 10,000 samples and 1024 directions the estimate
    is within 5% (the noise floor, two N(0, I) sets, is a few hundredths)."""
    generator = torch.Generator().manual_seed(d)
    n = 10_000
    m = torch.zeros(d, dtype=torch.float64)
    m[0], m[-1] = 2.0 * math.sqrt(d), 1.0 * math.sqrt(d)
    a = torch.randn((n, d), generator=generator, dtype=torch.float64)
    b = torch.randn((n, d), generator=generator, dtype=torch.float64) + m
    floor = sliced_wasserstein(a, torch.randn((n, d), generator=generator, dtype=torch.float64), projections=1024)
    expected = m.norm().item() / math.sqrt(d)
    assert floor < 0.05
    assert abs(sliced_wasserstein(a, b, projections=1024) - expected) < 0.05 * expected


def test_sliced_wasserstein_metric_draws_the_reference_from_the_dataset():
    dataset = Gaussian(mean=(1.0, -0.5), std=(0.5, 1.5))
    metric = SlicedWasserstein()
    generator = torch.Generator().manual_seed(0)
    true = dataset.sample(5000, generator=generator, device=torch.device("cpu"), dtype=torch.float64).x1
    assert metric(true, dataset) < 0.06
    assert metric(true + torch.tensor([2.0, 0.0], dtype=torch.float64), dataset) > 1.0
    with pytest.raises(ValueError, match="positive integer"):
        SlicedWasserstein(projections=0)
