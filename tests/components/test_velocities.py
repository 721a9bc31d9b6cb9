"""Velocity sources: the model's diagonal and the conditional velocity of the pair."""

import pytest
import torch

from flowmap_components.objectives.lsd import LSD
from flowmap_components.velocities.conditional import ConditionalVelocity
from flowmap_components.velocities.model import ModelVelocity
from flowmap_core import registry, testing
from tests.instances import instance


def inputs(n=64):
    exact = registry.build("exact", "gaussian")
    case = testing.triangle_case(n, exact.data_shape)
    return exact, testing.objective_input(case, exact, instance("parameterisation", "euler"))


def test_model_velocity_is_the_teachers_diagonal():
    exact, inp = inputs()
    x = inp.x0
    torch.testing.assert_close(ModelVelocity().at(inp, x, inp.s, None), exact.velocity(x, inp.s))


def test_conditional_velocity_is_the_pairs_derivative():
    exact, inp = inputs()
    point = inp.interpolant.interpolate(inp.x0, inp.x1, inp.s)
    torch.testing.assert_close(ConditionalVelocity().at(inp, point.xt, inp.s, point), inp.x1 - inp.x0)
    with pytest.raises(ValueError, match="only at interpolant points"):
        ConditionalVelocity().at(inp, point.xt, inp.s, None)


def test_lsd_refuses_the_conditional_velocity():
    with pytest.raises(ValueError, match="not an interpolant point"):
        LSD(velocity=ConditionalVelocity())
