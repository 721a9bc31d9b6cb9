"""exact.gaussian_mixture: the solver-integrated map is a flow (semigroup to 1e-8), reduces to
exact.gaussian for one component, passes the kit's identities and fails them when perturbed."""

import pytest
import torch

from flowmap_components.datasets.gaussian_mixture import GaussianMixtureND
from flowmap_components.exact.gaussian import GaussianFlow
from flowmap_components.exact.gaussian_mixture import GaussianMixtureFlow, mixture_means
from flowmap_core import testing
from tests.instances import instances

DIAGONAL = GaussianMixtureFlow(
    means=((-2.0, 0.0, 1.0), (2.0, 0.5, 0.0), (0.0, -1.5, -1.0)),
    stds=(0.3, (0.6, 0.2, 0.4), 0.8),
    weights=(0.5, 0.3, 0.2),
)


def pairs(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """x ~ N(0, 2 I) `(n, d)` and times s < u < t spread over [0, 1], the ends included."""
    generator = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn((n, d), generator=generator, dtype=torch.float64)
    s, u, t = torch.rand((3, n), generator=generator, dtype=torch.float64).sort(dim=0).values
    s[0], t[0] = 0.0, 1.0
    return x, s, u, t


def test_semigroup_to_1e_8():
    x, s, u, t = pairs(16, 3)
    X = DIAGONAL.flow_map
    error = (X(X(x, s, u), u, t) - X(x, s, t)).abs().max().item()
    assert error < 1e-8, error


def test_backward_map_inverts_the_forward_map():
    x, s, _, t = pairs(16, 3, seed=1)
    X = DIAGONAL.flow_map
    assert (X(X(x, s, t), t, s) - x).abs().max().item() < 1e-8


@pytest.mark.parametrize(("name", "interpolant"), instances("interpolant"))
def test_one_component_is_exact_gaussian(name, interpolant):
    mean, std = (1.0, -0.5), (0.5, 1.5)
    mixture = GaussianMixtureFlow(means=(mean,), stds=(std,), interpolant=interpolant)
    gaussian = GaussianFlow(mean=mean, std=std, interpolant=interpolant)
    x, s, _, t = pairs(16, 2, seed=2)
    assert (mixture.flow_map(x, s, t) - gaussian.flow_map(x, s, t)).abs().max().item() < 1e-8
    assert (mixture.velocity(x, t) - gaussian.velocity(x, t)).abs().max().item() < 1e-12
    direction = torch.randn_like(x)
    _, jx = torch.func.jvp(lambda y: mixture.flow_map(y, s, t), (x,), (direction,))
    _, expected = torch.func.jvp(lambda y: gaussian.flow_map(y, s, t), (x,), (direction,))
    assert (jx - expected).abs().max().item() < 1e-8  # grad_x X* by the variational equation


def test_kit_identities_hold_for_the_solved_map():
    case = testing.triangle_case(8, (3,), seed=3)
    testing.check_flow_map_identities(DIAGONAL.flow_map, DIAGONAL.velocity, case)


def test_kit_identities_fail_for_a_perturbed_map():
    case = testing.triangle_case(8, (3,), seed=3)
    perturbed = testing.PerturbedFlow(DIAGONAL, 1e-4)
    with pytest.raises(AssertionError, match="semigroup"):
        testing.check_flow_map_identities(perturbed.flow_map, DIAGONAL.velocity, case)


def test_the_map_transports_noise_to_the_mixture():
    """X*_{0,1} of 2000 noise draws has the mixture's mean and per-dimension variance
    (within 5 standard errors)."""
    generator = torch.Generator().manual_seed(4)
    x0 = torch.randn((2000, 3), generator=generator, dtype=torch.float64)
    x1 = DIAGONAL.flow_map(x0, torch.zeros(2000, dtype=torch.float64), torch.ones(2000, dtype=torch.float64))
    means, variance, weights = DIAGONAL.parameters()
    mean = weights @ means
    second = weights @ (variance + means**2)
    target_variance = second - mean**2
    assert ((x1.mean(0) - mean).abs() < 5 * (target_variance / 2000).sqrt()).all()
    assert ((x1.var(0) / target_variance - 1).abs() < 5 * (2 / 2000) ** 0.5).all()


@pytest.mark.parametrize(("dimension", "components"), [(2, 3), (8, 4), (32, 6)])
def test_simplex_means_are_equidistant(dimension, components):
    means = torch.tensor(mixture_means(dimension=dimension, components=components, separation=3.0), dtype=torch.float64)
    assert means.shape == (components, dimension)
    assert torch.allclose(
        torch.pdist(means), torch.full((components * (components - 1) // 2,), 3.0, dtype=torch.float64)
    )
    assert means.mean(0).abs().max() < 1e-12


def test_random_means_closest_pair_is_the_separation():
    means = torch.tensor(
        mixture_means(dimension=2, components=6, separation=2.5, layout="random", seed=1), dtype=torch.float64
    )
    assert abs(torch.pdist(means).min().item() - 2.5) < 1e-12
    with pytest.raises(ValueError, match="layout='random'"):
        mixture_means(dimension=2, components=4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"means": ((0.0, 0.0), (1.0,))}, "one dimension"),
        ({"means": ((0.0,), (1.0,)), "stds": (1.0, 1.0, 1.0)}, "3 entries for 2 components"),
        ({"means": ((0.0,),), "stds": (-1.0,)}, "positive"),
        ({"means": ((0.0, 0.0),), "stds": ((1.0, 1.0, 1.0),)}, "2 positive numbers"),
        ({"weights": (1.0, -1.0, 1.0)}, "non-negative"),
    ],
)
def test_bad_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixtureFlow(**kwargs)


def test_dataset_draws_the_mixture():
    dataset = GaussianMixtureND(mixture=DIAGONAL)
    generator = torch.Generator().manual_seed(5)
    batch = dataset.sample(20_000, generator=generator, device=torch.device("cpu"), dtype=torch.float32)
    assert batch.x1.shape == (20_000, 3) and dataset.num_classes == 3
    means, _, weights = DIAGONAL.parameters()
    counts = torch.bincount(batch.label, minlength=3).double() / 20_000
    assert (counts - weights).abs().max() < 0.02
    for k in range(3):
        assert (batch.x1[batch.label == k].double().mean(0) - means[k]).abs().max() < 0.05
