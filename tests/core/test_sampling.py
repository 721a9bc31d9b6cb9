"""Few-step flow-map sampling and ODE sampling, against the exact Gaussian flow."""

import pytest
import torch

from flowmap_core import registry, testing
from flowmap_core.sampling import flow_map_sample, ode_sample, uniform_grid
from tests.instances import instance


@pytest.fixture
def exact():
    return registry.build("exact", "gaussian", interpolant=instance("interpolant", "trigonometric"))


def noise(n=512):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("steps", [1, 2, 4, 8, 16])
def test_flow_map_sampling_of_the_exact_map_is_exact(exact, steps):
    X = testing.exact_flow_map(exact, instance("parameterisation", "euler"))
    x0 = noise()
    out = flow_map_sample(X, x0, steps=steps)
    ones, zeros = torch.ones(len(x0), dtype=torch.float64), torch.zeros(len(x0), dtype=torch.float64)
    torch.testing.assert_close(out.x, exact.flow_map(x0, zeros, ones), rtol=1e-9, atol=1e-9)
    assert out.nfe == steps


def test_flow_map_sampling_on_a_given_grid(exact):
    X = testing.exact_flow_map(exact, instance("parameterisation", "second_order"))
    grid = torch.tensor([0.0, 0.1, 0.5, 1.0], dtype=torch.float64)
    out = flow_map_sample(X, noise(), grid=grid)
    assert out.nfe == 3
    ones, zeros = torch.ones(512, dtype=torch.float64), torch.zeros(512, dtype=torch.float64)
    torch.testing.assert_close(out.x, exact.flow_map(noise(), zeros, ones), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("solver, order, nfe_per_step", [("euler", 1, 1), ("heun", 2, 2), ("rk4", 4, 4)])
def test_ode_solvers_converge_at_their_order(exact, solver, order, nfe_per_step):
    x0 = noise()
    ones, zeros = torch.ones(512, dtype=torch.float64), torch.zeros(512, dtype=torch.float64)
    target = exact.flow_map(x0, zeros, ones)
    errors = []
    for steps in (16, 32):
        out = ode_sample(exact.velocity, x0, solver=solver, steps=steps)
        assert out.nfe == nfe_per_step * steps
        errors.append((out.x - target).abs().max().item())
    observed = torch.log2(torch.tensor(errors[0] / errors[1])).item()
    assert abs(observed - order) < 0.35, f"{solver}: observed order {observed:.2f}"


def test_adaptive_solver_is_accurate_and_counts_evaluations(exact):
    x0 = noise()
    out = ode_sample(exact.velocity, x0, solver="dopri5", rtol=1e-8, atol=1e-8)
    ones, zeros = torch.ones(512, dtype=torch.float64), torch.zeros(512, dtype=torch.float64)
    assert (out.x - exact.flow_map(x0, zeros, ones)).abs().max().item() < 1e-6
    assert out.nfe > 6


def test_bad_arguments():
    with pytest.raises(ValueError, match="known solvers: euler, heun, rk4, dopri5"):
        ode_sample(lambda x, t: x, noise(), solver="midpoint", steps=4)
    with pytest.raises(ValueError, match="exactly one of"):
        ode_sample(lambda x, t: x, noise(), steps=4, grid=uniform_grid(4))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        uniform_grid(0)
