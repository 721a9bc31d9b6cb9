"""Laws of every registered weighting."""

import pytest
import torch

from components.weighting.adaptive import Adaptive
from components.weighting.learned import LearnedLogVariance
from tests.instances import instance, instances


@pytest.mark.parametrize("name, weighting", instances("weighting"))
def test_weighting_laws(name, weighting):
    """A scalar, finite, and never rewarding a larger loss: d(weighted)/d(l_i) >= 0."""
    g = torch.Generator().manual_seed(0)
    losses, s, t = torch.rand((3, 64), generator=g, dtype=torch.float64)
    if isinstance(weighting, torch.nn.Module):
        weighting = weighting.double()
    losses.requires_grad_()
    value = weighting(losses, s, t)
    assert value.shape == () and torch.isfinite(value)
    (grad,) = torch.autograd.grad(value, losses)
    assert (grad >= 0).all()


@pytest.mark.parametrize("name", ["uniform", "learned"])
def test_weighting_starts_at_the_mean(name):
    weighting = instance("weighting", name)
    if isinstance(weighting, torch.nn.Module):
        weighting = weighting.double()
    losses, s, t = torch.rand((3, 64), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(weighting(losses, s, t), losses.mean())


def test_adaptive_weight_is_meanflows():
    losses = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    s = t = torch.zeros(3, dtype=torch.float64)
    expected = (losses / (losses + 1e-3)).mean()
    torch.testing.assert_close(Adaptive(power=1.0, offset=1e-3)(losses, s, t), expected)
    torch.testing.assert_close(Adaptive(power=0.0)(losses, s, t), losses.mean())


def test_learned_log_variance_learns_the_loss_scale():
    """Minimising exp(-w) l + w over w gives exp(w(s, t)) = l(s, t)."""
    weighting = LearnedLogVariance(octaves=4).double()
    optimiser = torch.optim.Adam(weighting.parameters(), lr=0.05)
    t = torch.linspace(0, 1, 64, dtype=torch.float64)
    s = torch.zeros_like(t)
    losses = 0.1 + t  # the expected loss grows with t
    for _ in range(1500):
        optimiser.zero_grad()
        weighting(losses, s, t).backward()
        optimiser.step()
    scale = weighting.log_variance(s, t).exp().detach()
    torch.testing.assert_close(scale, losses, rtol=0.05, atol=0.01)
