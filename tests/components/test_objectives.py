"""Every objective at the exact Gaussian flow map, for every interpolant and parameterisation.

- Self-distillation residuals (LSD, ESD, PSD-M, PSD-U, sums of them) are below 1e-10 at
  the exact map (float64) and above 1e-4 when the map is perturbed by 1e-2.
- Every objective's expected value is lower at the exact map than at a perturbed one,
  beyond Monte Carlo error: the paired excess over 50,000 samples exceeds 5 standard
  errors (`flowmap_core.testing.MonteCarloComparison`). For flow matching this is the
  statement that b_t = E[dx_t/dt | x_t] minimises |v - dx_t/dt|^2.
"""

import pytest
import torch
from hypothesis import given

from components.objectives.flow_matching import FlowMatching
from components.stopgrad.policies import FullStopGradient, NoStopGradient
from flowmap_core import registry, testing
from tests.instances import instance, instances, is_residual


def grid():
    """(objective, exact flow, parameterisation) over all registered combinations."""
    out = []
    for objective_id, objective in instances("objective"):
        for interpolant_id, interpolant in instances("interpolant"):
            for parameterisation_id, parameterisation in instances("parameterisation"):
                exact = registry.build("exact", "gaussian", interpolant=interpolant)
                out.append(
                    pytest.param(
                        objective, exact, parameterisation, id=f"{objective_id}-{interpolant_id}-{parameterisation_id}"
                    )
                )
    return out


def residual_grid():
    return [p for p in grid() if is_residual(p.values[0])]


GAUSSIAN_2D = testing.data_shapes().filter(lambda shape: shape == (2,))


@pytest.mark.parametrize("objective, exact, parameterisation", residual_grid())
@given(case=testing.cases(shapes=GAUSSIAN_2D))
def test_residual_vanishes_at_exact_map(objective, exact, parameterisation, case):
    rows = case.off_diagonal()
    loss = objective(testing.objective_input(case, exact, parameterisation, rows=rows)).per_example
    assert loss.abs().max().item() < 1e-10


@pytest.mark.parametrize("objective, exact, parameterisation", residual_grid())
def test_residual_rises_off_exact_map(objective, exact, parameterisation):
    case = testing.triangle_case(2048, exact.data_shape)
    testing.check_residual_objective(objective, exact, parameterisation, case, at_exact=1e-10, min_rise=1e-4)


@pytest.mark.parametrize("objective, exact, parameterisation", grid())
def test_exact_map_minimises_expected_loss(objective, exact, parameterisation):
    """For residuals trivially (zero at the exact map); for regressions on the diagonal
    (flow matching) or on a conditional velocity (MeanFlow-style ESD), in expectation."""
    on_diagonal = objective.registry_name in {"flow_matching", "split"}
    comparison = testing.check_minimised_at_exact(
        objective, exact, parameterisation, perturbation=0.1, n=20_000, diagonal=on_diagonal
    )
    assert comparison.excess > 0


def test_flow_matching_excess_is_perturbation_energy():
    """E|b + d - dx|^2 - E|b - dx|^2 = E|d|^2 + 2 E[d . (b - dx)], and the cross term is 0
    because b = E[dx | x_t]: the measured excess equals the energy of d within 5 s.e."""
    exact = registry.build("exact", "gaussian")
    perturbed = testing.PerturbedFlow(exact, 0.1)
    comparison = testing.compare_at_exact(FlowMatching(), exact, instance("parameterisation", "euler"), 0.1, n=50_000)
    generator = torch.Generator().manual_seed(0)  # compare_at_exact's draws: t, then x0 and x1
    t = torch.rand(50_000, generator=generator, dtype=torch.float64)
    case = testing.Case(seed=0, data_shape=(2,), s=t, u=t, t=t, n_diagonal=50_000)
    x1 = exact.sample_data(50_000, generator=case.generator(1), dtype=torch.float64)
    xt = exact.interpolant.interpolate(case.x0, x1, t).xt
    energy = (perturbed.velocity(xt, t) - exact.velocity(xt, t)).pow(2).mean().item()
    assert comparison.z > 5
    assert abs(comparison.excess - energy) < 5 * comparison.standard_error


@pytest.mark.parametrize("policy", [NoStopGradient(), FullStopGradient()])
@pytest.mark.parametrize("name", ["lsd", "esd", "psd"])
def test_residual_value_does_not_depend_on_stopgrad(policy, name):
    exact = registry.build("exact", "gaussian")
    parameterisation = instance("parameterisation", "euler")
    case = testing.triangle_case(256, exact.data_shape)
    inp = testing.objective_input(case, exact, parameterisation, perturbation=0.05)
    default = registry.build("objective", name)(inp).per_example
    other = registry.build("objective", name, stopgrad=policy)(inp).per_example
    assert (default - other).abs().max().item() < 1e-12


def test_psd_rejects_bad_h():
    with pytest.raises(ValueError, match=r"PSD.h must be in \(0, 1\)"):
        registry.build("objective", "psd", h=1.5)


def test_weighted_sum_needs_matching_weights():
    with pytest.raises(ValueError, match="2 terms but 1 weights"):
        registry.build("objective", "weighted_sum", terms=(FlowMatching(), FlowMatching()), weights=(1.0,))
