"""Laws of every registered interpolant: boundary values and d/dt consistency."""

import pytest
import torch
from hypothesis import given

from flowmap_components.interpolants.general import General
from flowmap_core import testing
from tests.instances import instances


@pytest.mark.parametrize("name, interpolant", instances("interpolant"))
@given(case=testing.cases())
def test_interpolant_laws(name, interpolant, case):
    testing.check_interpolant(interpolant, case)


def test_general_reproduces_linear():
    general = General(alpha=lambda t: 1 - t, beta=lambda t: t)
    t = torch.linspace(0, 1, 7, dtype=torch.float64)
    c = general.coefficients(t)
    torch.testing.assert_close(c.alpha_dot, -torch.ones_like(t))
    torch.testing.assert_close(c.beta_dot, torch.ones_like(t))


@pytest.mark.parametrize(
    "alpha, beta, message",
    [
        (lambda t: 1 - t, lambda t: t + 0.5, r"beta\(0\) = 0 and beta\(1\) = 1"),
        (lambda t: torch.ones_like(t), lambda t: t, r"alpha\(0\) = 1 and alpha\(1\) = 0"),
    ],
)
def test_general_rejects_wrong_boundary_values(alpha, beta, message):
    with pytest.raises(ValueError, match=message):
        General(alpha=alpha, beta=beta)


def test_general_rejects_non_callable():
    with pytest.raises(TypeError, match="must be a callable"):
        General(alpha=0.5, beta=lambda t: t)
