"""Laws of every registered weighting."""

import pytest
import torch

from flowmap_components.weighting.adaptive import Adaptive
from flowmap_components.weighting.learned import LearnedLogVariance
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


def test_uniform_is_the_mean():
    weighting = instance("weighting", "uniform")
    losses, s, t = torch.rand((3, 64), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(weighting(losses, s, t), losses.mean())


def test_learned_starts_at_the_mean_over_its_scale():
    """At w = 0 the first batch's loss is its own mean divided by that mean: 1, with the
    uniform mean's gradient divided by the scale."""
    weighting = LearnedLogVariance().double()
    losses, s, t = torch.rand((3, 64), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    losses.requires_grad_()
    value = weighting(losses, s, t)
    torch.testing.assert_close(value, torch.ones((), dtype=torch.float64))
    (grad,) = torch.autograd.grad(value, losses)
    torch.testing.assert_close(grad, torch.full_like(losses, 1 / (64 * losses.mean().item())))


def test_adaptive_weight_is_meanflows():
    losses = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    s = t = torch.zeros(3, dtype=torch.float64)
    expected = (losses / (losses + 1e-3)).mean()
    torch.testing.assert_close(Adaptive(power=1.0, offset=1e-3)(losses, s, t), expected)
    torch.testing.assert_close(Adaptive(power=0.0)(losses, s, t), losses.mean())


def test_learned_log_variance_learns_the_relative_loss_scale():
    """Minimising exp(-w) l / c + w over w gives exp(w(s, t)) = l(s, t) / c, c the mean loss."""
    weighting = LearnedLogVariance(octaves=4).double()
    optimiser = torch.optim.Adam(weighting.parameters(), lr=0.05)
    t = torch.linspace(0, 1, 64, dtype=torch.float64)
    s = torch.zeros_like(t)
    losses = 1.0 + t  # the expected loss grows with t, within e^(+-bound) of its mean
    for _ in range(1500):
        optimiser.zero_grad()
        weighting(losses, s, t).backward()
        optimiser.step()
    torch.testing.assert_close(weighting.scale, losses.mean())
    scale = weighting.log_variance(s, t).exp().detach()
    torch.testing.assert_close(scale, losses / losses.mean(), rtol=0.05, atol=0.01)


def test_learned_log_variance_stays_bounded_when_the_residual_is_zero():
    """Off-diagonal residuals are exactly 0 at initialisation: the unbounded optimum is
    w = -inf. Half the rows have zero loss for 3000 Adam steps; w stays within the bound
    and the zero rows' weight exp(-w) within e^bound, while the other rows keep theirs."""
    weighting = LearnedLogVariance(octaves=4, bound=2.0).double()
    optimiser = torch.optim.Adam(weighting.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    for _ in range(3000):
        s, t = torch.rand((2, 128), generator=g, dtype=torch.float64).sort(dim=0).values
        t[:64] = s[:64]  # diagonal rows: flow matching, loss ~ 2
        losses = torch.where(s == t, 2.0, 0.0)
        optimiser.zero_grad()
        weighting(losses, s, t).backward()
        optimiser.step()
    s, t = torch.rand((2, 4096), generator=g, dtype=torch.float64).sort(dim=0).values
    w = weighting.log_variance(s, t).detach()
    assert torch.isfinite(w).all() and w.abs().max() <= 2.0
    assert w.min() < -1.9  # it did run toward -inf, and the bound held it
    torch.testing.assert_close(weighting.scale, torch.tensor(1.0, dtype=torch.float64))


def _steps_to_recover(weighting, drift_steps=500, limit=500):
    """Drift: half the rows (the off-diagonal ones) have zero loss for `drift_steps` Adam steps,
    so their w runs to the bound. Then every row has the same loss (the optimum is w = 0);
    the number of steps until |w| < bound / 2 on every row (`limit` if never)."""
    optimiser = torch.optim.Adam(weighting.parameters(), lr=0.02)
    g = torch.Generator().manual_seed(0)
    for step in range(drift_steps + limit):
        s, t = torch.rand((2, 128), generator=g, dtype=torch.float64).sort(dim=0).values
        t[:64] = s[:64]
        losses = torch.where(s == t, 2.0, 0.0) if step < drift_steps else torch.ones_like(s)
        optimiser.zero_grad()
        weighting(losses, s, t).backward()
        optimiser.step()
        if step == drift_steps - 1:
            assert weighting.log_variance(s, t).min() < -0.9 * weighting.bound  # saturated
        if step >= drift_steps and weighting.log_variance(s, t).abs().max() < weighting.bound / 2:
            return step - drift_steps
    return limit


def test_learned_log_variance_comes_back_from_saturation():
    """Saturated tanh has no gradient, so Adam drifts u outward at about lr a step, and without
    the restoring term (slack = 1e9) coming back takes as long; with it (slack = 2) u stays
    within reach and w returns to the new optimum in about a hundred steps."""
    assert _steps_to_recover(LearnedLogVariance(octaves=4).double()) < 150
    assert _steps_to_recover(LearnedLogVariance(octaves=4, slack=1e9).double()) >= 500


def test_learned_scale_ignores_a_non_finite_batch():
    """A step the trainer skips (a NaN loss) must not poison the running scale."""
    weighting = LearnedLogVariance().double()
    s = t = torch.zeros(4, dtype=torch.float64)
    weighting(torch.full((4,), 2.0, dtype=torch.float64), s, t)
    weighting(torch.tensor([1.0, float("nan"), 1.0, 1.0], dtype=torch.float64), s, t)
    assert weighting.scale.item() == 2.0
    weighting(torch.full((4,), 1.0, dtype=torch.float64), s, t)
    torch.testing.assert_close(weighting.scale, torch.tensor(0.99 * 2.0 + 0.01 * 1.0, dtype=torch.float64))


def test_learned_per_term_keeps_the_terms_balance():
    """With `per_term`, exp(w) learns each row's loss relative to its own term's mean. Two
    terms, each with one loss (diagonal rows 2, long off-diagonal pairs 0.1): per term, w
    stays ~0 on both (the uniform mean's balance); the plain form up-weights the
    off-diagonal rows and down-weights the diagonal (w ~ log(2 / 1.05) there)."""

    def trained(per_term):
        weighting = LearnedLogVariance(octaves=4, bound=2.0, per_term=per_term).double()
        optimiser = torch.optim.Adam(weighting.parameters(), lr=0.05)
        g = torch.Generator().manual_seed(0)
        for _ in range(1500):
            s, t = torch.rand((2, 128), generator=g, dtype=torch.float64)
            s, t = torch.cat([s[:64], s[64:] / 4]), torch.cat([s[:64], 0.75 + t[64:] / 4])
            losses = torch.where(s == t, 2.0, 0.1)
            optimiser.zero_grad()
            weighting(losses, s, t).backward()
            optimiser.step()
        x = torch.linspace(0, 1, 64, dtype=torch.float64)
        return weighting.log_variance(x, x).detach(), weighting.log_variance(x / 4, 0.75 + x / 4).detach()

    diagonal, off = trained(per_term=True)
    assert diagonal.abs().max() < 0.15 and off.abs().max() < 0.15
    diagonal, off = trained(per_term=False)
    assert diagonal.min() > 0.4 and off.max() < -1.5
