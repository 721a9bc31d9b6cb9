"""Laws of every registered parameterisation on a random network and on closed-form maps."""

import pytest
import torch
from hypothesis import given

from flowmap_components.backbones.mlp import MLP
from flowmap_components.exact.gaussian import GaussianFlow
from flowmap_core import registry, testing
from tests.instances import instance, instances


def random_mlp(data_shape, heads):
    """A float64 MLP with a random (not zero) last layer, so the map is far from identity."""
    net = MLP(data_shape=data_shape, heads=heads, width=32, depth=2, octaves=2).double()
    torch.nn.init.normal_(net.out.weight, std=0.5)
    torch.nn.init.normal_(net.out.bias, std=0.5)
    return net


@pytest.mark.parametrize("name, parameterisation", instances("parameterisation"))
@pytest.mark.parametrize("interpolant", registry.names("interpolant"))
@given(case=testing.cases(shapes=testing.data_shapes()))
def test_parameterisation_laws(name, parameterisation, interpolant, case):
    net = random_mlp(case.data_shape, parameterisation.heads)
    exact = None
    if len(case.data_shape) == 1:
        dim = case.data_shape[0]
        exact = GaussianFlow(
            mean=tuple(0.5 * i for i in range(dim)),
            std=tuple(0.5 + 0.4 * i for i in range(dim)),
            interpolant=instance("interpolant", interpolant),
        )
    testing.check_parameterisation(parameterisation, net, case, exact=exact)


@pytest.mark.parametrize("name, parameterisation", instances("parameterisation"))
def test_heads_cannot_be_set(name, parameterisation):
    with pytest.raises(TypeError):
        type(parameterisation)(heads=3)
