"""Runtime shape checks are on in the test run and name the offending argument."""

import pytest
import torch

from flowmap_core.flow_map import FlowMap
from flowmap_core.typing import CHECKS_ON
from tests.instances import instance


def test_checks_are_on_in_tests():
    assert CHECKS_ON


def test_wrong_shape_names_the_argument():
    interpolant = instance("interpolant", "linear")
    x0 = torch.randn(4, 2)
    with pytest.raises(Exception) as error:
        interpolant.interpolate(x0, torch.randn(4), torch.rand(4))  # x1 is (batch,), not (batch, dim)
    message = str(error.value)
    assert "parameter 'x1'" in message or "typechecking parameter 'x1'" in message
    assert "Float[Tensor, 'batch *shape']" in message


def test_mismatched_batch_is_caught():
    X = FlowMap(net=lambda x, s, t: x.unsqueeze(1), parameterisation=instance("parameterisation", "euler"))
    with pytest.raises(Exception, match="parameter 't'"):
        X(torch.randn(4, 2), torch.rand(4), torch.rand(3))
