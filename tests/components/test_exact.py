"""Every closed-form flow satisfies the flow-map identities and its velocity is E[dx_t/dt | x_t]."""

import pytest
from hypothesis import given

from flowmap_core import registry, testing
from tests.instances import instance, instances

SOLVED = {"gaussian_mixture"}
"""Exact flows integrated by an ODE solver: every example costs solves, and their own tests
check them through the parameterisations more closely."""


def exact_flows(solved_interpolants: tuple[str, ...] | None = None):
    """Every registered exact flow under every registered interpolant (for solver-integrated
    flows, only `solved_interpolants` if given)."""
    out = []
    for name in registry.names("exact"):
        for interpolant_name, interpolant in instances("interpolant"):
            if name in SOLVED and solved_interpolants is not None and interpolant_name not in solved_interpolants:
                continue
            flow = registry.get("exact", name)(interpolant=interpolant)
            out.append(pytest.param(flow, id=f"{name}-{interpolant_name}"))
    return out


@pytest.mark.parametrize("exact", exact_flows())
@given(case=testing.cases(shapes=testing.data_shapes().filter(lambda shape: shape == (2,))))
def test_exact_flow_identities(exact, case):
    testing.check_flow_map_identities(exact.flow_map, exact.velocity, case)


@pytest.mark.parametrize("exact", exact_flows(solved_interpolants=("linear",)))
@pytest.mark.parametrize("parameterisation", [n for n, p in instances("parameterisation") if p.fixed_t is None])
@given(case=testing.cases(shapes=testing.data_shapes().filter(lambda shape: shape == (2,))))
def test_exact_flow_read_through_parameterisation_keeps_identities(exact, parameterisation, case):
    X = testing.exact_flow_map(exact, instance("parameterisation", parameterisation))
    testing.check_flow_map_identities(X, X.velocity, case)


@pytest.mark.parametrize("exact", exact_flows())
def test_exact_velocity_is_conditional_mean(exact):
    testing.check_velocity_is_conditional_mean(exact)


def test_wrong_velocity_is_caught():
    exact = registry.build("exact", "gaussian")

    class Off:
        data_shape = exact.data_shape
        interpolant = exact.interpolant
        flow_map = exact.flow_map
        sample_data = exact.sample_data

        def velocity(self, x, t):
            return 1.05 * exact.velocity(x, t)

    with pytest.raises(AssertionError, match="not the conditional mean"):
        testing.check_velocity_is_conditional_mean(Off())


@pytest.mark.parametrize("std, message", [((1.0, -1.0), "positive"), ((1.0,), "one mean and one std")])
def test_gaussian_rejects_bad_moments(std, message):
    with pytest.raises(ValueError, match=message):
        registry.build("exact", "gaussian", mean=(0.0, 0.0), std=std)
