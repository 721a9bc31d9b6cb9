"""A component written outside the package joins a family, is selected by gin, and is checked."""

import gin
import pytest
from hypothesis import given

from flowmap_core import registry, testing
from tests.custom.quadratic_interpolant import Quadratic

VECTORS = testing.data_shapes().filter(lambda shape: len(shape) == 1)


def test_custom_component_is_registered():
    assert registry.get("interpolant", "quadratic") is Quadratic
    assert "quadratic" in registry.describe()


def test_custom_component_is_selected_by_gin():
    gin.clear_config()
    try:
        gin.parse_config("exact.gaussian.interpolant = @interpolant.quadratic()")
        flow = gin.get_configurable("exact.gaussian")()
    finally:
        gin.clear_config()
    assert isinstance(flow.interpolant, Quadratic)
    testing.check_velocity_is_conditional_mean(flow)


@given(case=testing.cases(shapes=VECTORS))
def test_custom_interpolant_passes_the_laws(case):
    testing.check_interpolant(Quadratic(), case)


@given(case=testing.cases(shapes=VECTORS))
def test_wrong_derivative_is_caught(case):
    with pytest.raises(AssertionError, match="beta_dot = d beta / dt"):
        testing.check_interpolant(Quadratic(beta_dot_error=0.1), case)
