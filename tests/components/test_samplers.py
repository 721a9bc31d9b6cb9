"""Samplers of trained maps, on the exact Gaussian flow."""

import math

import pytest
import torch

from flowmap_core import registry, testing
from tests.instances import instance, instances


@pytest.fixture
def exact():
    return registry.build("exact", "gaussian")


def moments(x):
    return x.mean(0), x.std(0)


@pytest.mark.parametrize("name, sampler", instances("sampler"))
@pytest.mark.parametrize("steps", [1, 4])
def test_samples_have_the_data_distribution(name, sampler, steps, exact):
    """Every sampler of the exact map produces N(mean, diag(std^2)) (the ODE one up to its
    discretisation error, so with 64 steps)."""
    parameterisation = instance("parameterisation", "single_time" if name == "consistency" else "euler")
    X = testing.exact_flow_map(exact, parameterisation)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(100_000, 2, generator=g, dtype=torch.float64)
    out = sampler(X, x0, 64 if name == "ode" else steps, interpolant=exact.interpolant, generator=g)
    mean, std = moments(out.x)
    torch.testing.assert_close(mean, torch.tensor(exact.mean, dtype=torch.float64), atol=0.02, rtol=0)
    torch.testing.assert_close(std, torch.tensor(exact.std, dtype=torch.float64), atol=0.02, rtol=0.02)
    assert out.nfe == (64 if name == "ode" else steps)


def test_consistency_sampler_renoises(exact):
    """Two consistency steps draw fresh noise: samples differ from one jump, same law."""
    X = testing.exact_flow_map(exact, instance("parameterisation", "single_time"))
    sampler = registry.build("sampler", "consistency")
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1000, 2, generator=g, dtype=torch.float64)
    one = sampler(X, x0, 1, interpolant=exact.interpolant, generator=g).x
    two = sampler(X, x0, 2, interpolant=exact.interpolant, generator=g).x
    assert not torch.allclose(one, two)


@pytest.mark.parametrize("interpolant", ["linear", "trigonometric"])
def test_consistency_sampler_starts_where_training_starts(interpolant):
    """The first jump is X_{s_0,1}(alpha(s_0) x0) at the time s_0 of sigma_max (1 / 81 under the
    linear interpolant at sigma_max = 80; (2 / pi) atan(1 / 80) under the trigonometric one)."""
    calls = []

    def X(x, s, t):
        calls.append((x, s))
        return x

    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sampler = registry.build("sampler", "consistency")
    sampler(X, x0, 1, interpolant=registry.build("interpolant", interpolant), generator=torch.Generator())
    start = {"linear": 1 / 81, "trigonometric": 2 / torch.pi * math.atan(1 / 80)}[interpolant]
    alpha = {"linear": 1 - start, "trigonometric": math.cos(torch.pi * start / 2)}[interpolant]
    ((x, s),) = calls
    torch.testing.assert_close(s, torch.full((16,), start, dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(x, alpha * x0, rtol=1e-12, atol=0)
    sampler = registry.build("sampler", "consistency", sigma_max=None)
    sampler(X, x0, 1, interpolant=registry.build("interpolant", interpolant), generator=torch.Generator())
    assert (calls[-1][1] == 0).all() and torch.equal(calls[-1][0], x0)


@pytest.mark.parametrize("power", [1.0, 1.74])
def test_consistency_sampler_renoises_at_its_power(power):
    """Three steps re-noise at s_i = (i / 3)^p, p = `renoise_power` (equal steps at p = 1)."""
    times = []

    def X(x, s, t):
        times.append(s[0].item())
        return x

    x0 = torch.zeros(4, 2, dtype=torch.float64)
    sampler = registry.build("sampler", "consistency", renoise_power=power)
    sampler(X, x0, 3, interpolant=registry.build("interpolant", "linear"), generator=torch.Generator())
    assert times[1:] == pytest.approx([(1 / 3) ** power, (2 / 3) ** power], rel=1e-12)
