"""The registry: families, registration, unknown and duplicate names, the listing."""

import attrs
import gin
import pytest

from flowmap_core import registry
from flowmap_core.registry import RegistryError

FAMILIES = {
    "interpolant",
    "parameterisation",
    "objective",
    "time_sampler",
    "stopgrad",
    "weighting",
    "backbone",
    "dataset",
    "metric",
    "exact",
}


def test_standard_families_are_declared():
    assert FAMILIES <= {f.name for f in registry.families()}


def test_unknown_name_lists_known_names():
    with pytest.raises(RegistryError) as error:
        registry.get("objective", "lsdd")
    message = str(error.value)
    assert "unknown objective 'lsdd'" in message
    for name in registry.names("objective"):
        assert name in message


def test_unknown_family_lists_families():
    with pytest.raises(RegistryError, match="known families: .*interpolant"):
        registry.get("interpolants", "linear")


def test_duplicate_name_is_rejected():
    with pytest.raises(RegistryError, match="'linear' is already registered in family 'interpolant'"):

        @registry.register("interpolant", "linear")
        class Another:
            def coefficients(self, t): ...

            def interpolate(self, x0, x1, t): ...


def test_contract_is_enforced_at_registration():
    with pytest.raises(TypeError, match="lacks interpolate"):

        @registry.register("interpolant", "half_done")
        @attrs.define(frozen=True)
        class HalfDone:
            def coefficients(self, t): ...


def test_registered_component_is_a_gin_configurable():
    gin.clear_config()
    gin.parse_config("objective.psd.h = 0.25")
    try:
        psd = gin.get_configurable("objective.psd")()
        assert psd.h == 0.25
        assert registry.build("objective", "psd").h == 0.5, "direct calls are untouched by gin"
    finally:
        gin.clear_config()


def test_describe_lists_every_family_and_component():
    listing = registry.describe()
    for family in registry.families():
        assert f"{family.name}: {family.doc}" in listing
        for name in registry.names(family.name):
            assert name in listing
