"""Every derivative strategy against forward-mode AD: on random networks under every
parameterisation, and on the exact Gaussian map (float64).

The tangent pass is exact (equal to forward-mode AD to 1e-12); the central finite
difference is O(h^2) accurate (its error shrinks by about 4 when h halves); the LSD
residual vanishes at the exact map whatever strategy takes its derivative.
"""

import pytest
import torch

from flowmap_components.backbones.mlp import MLP
from flowmap_components.derivatives.finite_difference import FiniteDifference
from flowmap_components.derivatives.forward_ad import ForwardAD
from flowmap_components.derivatives.tangent_pass import TangentPass
from flowmap_components.objectives.lsd import LSD
from flowmap_core import registry, testing
from flowmap_core.flow_map import FlowMap
from tests.instances import instances

DIRECTIONS = [("t",), ("s",), ("x", "s"), ("x", "s", "t")]


def _random_flow_map(parameterisation) -> FlowMap:
    torch.manual_seed(0)
    net = MLP(data_shape=(2,), heads=parameterisation.heads, width=16, depth=2, octaves=2, space_octaves=1).double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return FlowMap(net=net, parameterisation=parameterisation)


def _point():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(6, 2, generator=generator, dtype=torch.float64)
    s, t = torch.rand((2, 6), generator=generator, dtype=torch.float64).sort(0).values
    dx = torch.randn(6, 2, generator=generator, dtype=torch.float64)
    return x, s, t, {"x": dx, "s": torch.ones(6, dtype=torch.float64), "t": torch.ones(6, dtype=torch.float64)}


def _along(strategy, X, moving):
    x, s, t, tangents = _point()
    return strategy(X, x, s, t, **{f"d{name}": tangents[name] for name in moving})


@pytest.mark.parametrize("moving", DIRECTIONS, ids=["-".join(m) for m in DIRECTIONS])
@pytest.mark.parametrize("parameterisation_id, parameterisation", instances("parameterisation"))
def test_tangent_pass_equals_forward_ad(parameterisation_id, parameterisation, moving):
    X = _random_flow_map(parameterisation)
    V, dV = _along(TangentPass(), X, moving)
    V_ref, dV_ref = _along(ForwardAD(), X, moving)
    testing.assert_close(V, V_ref, "value", atol=1e-12, rtol=1e-12)
    testing.assert_close(dV, dV_ref, f"d/de V along {moving}", atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("moving", DIRECTIONS, ids=["-".join(m) for m in DIRECTIONS])
def test_finite_difference_is_second_order(moving):
    X = _random_flow_map(registry.build("parameterisation", "euler"))
    _, exact = _along(ForwardAD(), X, moving)
    errors = [(_along(FiniteDifference(step=h), X, moving)[1] - exact).abs().max().item() for h in (4e-3, 2e-3)]
    assert errors[1] < 1e-3
    assert 3.0 < errors[0] / errors[1] < 5.0, f"error ratio at h and h/2: {errors[0] / errors[1]:.2f} (expected ~4)"
    V, _ = _along(FiniteDifference(), X, moving)
    V_ref, _ = _along(ForwardAD(), X, moving)
    testing.assert_close(V, V_ref, "value", atol=0, rtol=0)


@pytest.mark.parametrize("derivative_id, derivative", instances("derivative"))
def test_every_strategy_agrees_with_forward_ad_on_the_exact_gaussian_map(derivative_id, derivative):
    exact = registry.build("exact", "gaussian", interpolant=registry.build("interpolant", "linear"))
    X = testing.exact_flow_map(exact, registry.build("parameterisation", "euler"))
    if derivative.unavailable(X):
        assert "tangent" in derivative.unavailable(X)  # the closed-form network has no tangent pass
        return
    x, s, t, tangents = _point()
    _, dV = derivative(X, x, s, t, dx=tangents["x"], ds=tangents["s"])
    _, dV_ref = ForwardAD()(X, x, s, t, dx=tangents["x"], ds=tangents["s"])
    tolerance = 1e-12 if derivative.exact else 1e-5
    testing.assert_close(dV, dV_ref, f"{derivative_id} at the exact map", atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("derivative_id, derivative", instances("derivative"))
def test_lsd_vanishes_at_the_exact_map_with_every_available_strategy(derivative_id, derivative):
    exact = registry.build("exact", "gaussian", interpolant=registry.build("interpolant", "linear"))
    parameterisation = registry.build("parameterisation", "euler")
    case = testing.triangle_case(64, (2,))
    inp = testing.objective_input(case, exact, parameterisation)
    if derivative.unavailable(inp.student):
        pytest.skip(f"{derivative_id} cannot differentiate the closed-form network")
    loss = LSD(derivative=derivative)(inp).per_example
    assert loss.max().item() < (1e-20 if derivative.exact else 1e-9)
    perturbed = testing.objective_input(case, exact, parameterisation, perturbation=1e-2)
    assert LSD(derivative=derivative)(perturbed).per_example.mean() > 1e-6


def test_tangent_pass_names_what_lacks_one():
    exact = registry.build("exact", "gaussian", interpolant=registry.build("interpolant", "linear"))
    X = testing.exact_flow_map(exact, registry.build("parameterisation", "euler"))
    message = TangentPass().unavailable(X)
    assert "ExactNetwork has no explicit tangent pass" in message and "forward_ad" in message
