"""Laws of every registered time sampler."""

import math

import attrs
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flowmap_components.interpolants.linear import Linear
from flowmap_components.interpolants.noise_level import noise_level
from flowmap_components.interpolants.trigonometric import Trigonometric
from flowmap_components.time_samplers.beta_gap import BetaGap
from flowmap_components.time_samplers.shift import Shift, shift_time
from flowmap_components.time_samplers.uniform import UniformTriangle
from flowmap_core import registry
from flowmap_core.protocols import Draw
from tests.instances import instances

CPU = torch.device("cpu")
LINEAR = Linear()


def draw(sampler, n, seed=0, step=0, interpolant=LINEAR):
    g = torch.Generator().manual_seed(seed)
    request = Draw(n=n, step=step, total_steps=10_000, generator=g, device=CPU, dtype=torch.float64)
    return sampler(attrs.evolve(request, interpolant=interpolant))


@pytest.mark.parametrize("name, sampler", instances("time_sampler"))
@given(n=st.integers(1, 300), seed=st.integers(0, 1000), step=st.integers(0, 10_000))
def test_time_sampler_laws(name, sampler, n, seed, step):
    pairs = draw(sampler, n, seed, step)
    k = pairs.n_diagonal
    assert pairs.s.shape == pairs.t.shape == (n,)
    assert pairs.s.dtype == torch.float64
    assert ((pairs.s >= 0) & (pairs.s <= 1) & (pairs.t >= 0) & (pairs.t <= 1)).all()
    assert torch.equal(pairs.s[:k], pairs.t[:k])
    if name != "full_square":
        assert (pairs.s[k:] <= pairs.t[k:]).all()
    owner = sampler if hasattr(sampler, "diagonal_fraction") else getattr(sampler, "base", None)
    if hasattr(owner, "diagonal_fraction"):
        assert k == round(n * owner.diagonal_fraction)
    assert 0 <= k <= n
    again = draw(sampler, n, seed, step)
    assert torch.equal(pairs.s, again.s) and torch.equal(pairs.t, again.t)


def test_uniform_triangle_is_uniform():
    pairs = draw(UniformTriangle(diagonal_fraction=0.0), 200_000)
    gap = pairs.t - pairs.s
    # uniform on the triangle: gap density 2 (1 - d), mean 1/3, s + t mean 1
    assert abs(gap.mean().item() - 1 / 3) < 0.005
    assert abs((pairs.s + pairs.t).mean().item() - 1.0) < 0.005


def test_gap_anneals_linearly():
    sampler = UniformTriangle(diagonal_fraction=0.0, initial_gap=0.1, max_gap=0.9, anneal_steps=100)
    for step, bound in [(0, 0.1), (50, 0.5), (100, 0.9), (10_000, 0.9)]:
        gap = draw(sampler, 20_000, step=step).t.sub(draw(sampler, 20_000, step=step).s)
        assert gap.max().item() <= bound + 1e-12
        assert gap.max().item() > 0.95 * bound


def test_beta_gap_mean():
    a, b = 2.0, 1.0
    pairs = draw(BetaGap(diagonal_fraction=0.0, concentration=(a, b)), 100_000)
    assert math.isclose((pairs.t - pairs.s).mean().item(), a / (a + b), abs_tol=0.005)


def test_full_square_swaps_a_share():
    sampler = registry.build("time_sampler", "full_square", base=UniformTriangle(), backward_fraction=0.25)
    pairs = draw(sampler, 40_000)
    k = pairs.n_diagonal
    backward = (pairs.s[k:] > pairs.t[k:]).double().mean().item()
    assert abs(backward - 0.25) < 0.02


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"diagonal_fraction": 1.5}, r"diagonal_fraction must be in \[0, 1\]"),
        ({"max_gap": -0.1}, r"max_gap must be in"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UniformTriangle(**kwargs)


def test_dyadic_steps_sit_on_their_grid():
    pairs = draw(registry.build("time_sampler", "dyadic"), 20_000)
    k = pairs.n_diagonal
    gap = (pairs.t - pairs.s)[k:]
    exponent = -torch.log2(gap)
    assert torch.allclose(exponent, exponent.round()) and exponent.min() == 0 and exponent.max() == 6
    half = gap / 2
    slot = pairs.s[k:] / half
    assert torch.allclose(slot, slot.round()), "s is a multiple of the half step d"
    assert (pairs.t <= 1).all()


def test_consistency_schedule_grows_and_pairs_adjacent_levels():
    schedule = registry.build("time_sampler", "consistency", initial_levels=10, final_levels=1280)
    assert schedule.levels(0, 1000) == 10 and schedule.levels(1000, 1000) == 1281  # the formula ends at s1 + 1
    early, late = draw(schedule, 5000, step=0), draw(schedule, 5000, step=10_000)
    for pairs in (early, late):
        assert pairs.n_diagonal == 0 and (pairs.t == 1).all() and (pairs.s < pairs.u).all() and (pairs.u < 1).all()
    assert (late.u - late.s).mean() < (early.u - early.s).mean()


@pytest.mark.parametrize("interpolant", [Linear(), Trigonometric()], ids=["linear", "trigonometric"])
def test_consistency_levels_are_the_interpolants_noise_levels(interpolant):
    """s and u are the times whose alpha / beta is a Karras level: 1 / (1 + sigma) under the
    linear interpolant, (2 / pi) atan(1 / sigma) under the trigonometric one (not 1 / (1 + sigma))."""
    schedule = registry.build("time_sampler", "consistency", initial_levels=10, final_levels=10)
    pairs = draw(schedule, 2000, interpolant=interpolant)
    sigmas = schedule.sigmas(schedule.levels(0, 10_000), torch.float64)
    closed_form = {"Linear": 1 / (1 + sigmas), "Trigonometric": 2 / math.pi * torch.atan(1 / sigmas)}
    expected = closed_form[type(interpolant).__name__]
    for times in (pairs.s, pairs.u):
        assert (times[:, None] - expected[None, :]).abs().min(dim=1).values.max() < 1e-12
    index = (pairs.s[:, None] - expected[None, :]).abs().argmin(dim=1)
    torch.testing.assert_close(noise_level(interpolant, pairs.s), sigmas[index], rtol=1e-9, atol=0)


def test_consistency_schedule_needs_the_interpolant():
    with pytest.raises(ValueError, match="through the run's interpolant"):
        draw(registry.build("time_sampler", "consistency"), 10, interpolant=None)


def test_lognormal_sigma_is_scms_time_proposal():
    """Lu & Song (2024): log(sigma_d tan t) ~ N(P_mean, P_std^2), TrigFlow's t = pi (1 - s) / 2 under
    the trigonometric interpolant: log(sigma_d tan(pi (1 - s) / 2)) has mean -1.0 and std 1.4."""
    sampler = registry.build("time_sampler", "lognormal_sigma")
    pairs = draw(sampler, 100_000, interpolant=Trigonometric())
    tau = torch.log(0.5 * torch.tan(math.pi * (1 - pairs.s) / 2))
    assert abs(tau.mean().item() + 1.0) < 0.02 and abs(tau.std().item() - 1.4) < 0.02
    assert pairs.n_diagonal == 0 and (pairs.t == 1).all() and (pairs.s < 1).all()
    again = draw(sampler, 1000, interpolant=Trigonometric())
    z = torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = 1 - 2 / math.pi * torch.atan(torch.exp(-1.0 + 1.4 * z) / 0.5)
    torch.testing.assert_close(again.s, expected, rtol=0, atol=1e-14)


def test_fixed_consistency_grid_keeps_its_levels():
    """Consistency distillation's fixed N = 18 at every step; the CT formula with s0 = s1 = 18 gives 19 after step 0."""
    fixed = registry.build("time_sampler", "consistency", growth="fixed", final_levels=18)
    assert [fixed.levels(k, 1000) for k in (0, 1, 500, 1000, 5000)] == [18] * 5
    assert registry.build("time_sampler", "consistency", initial_levels=18, final_levels=18).levels(1, 1000) == 19
    pairs = draw(fixed, 4000, step=999)
    assert len(torch.unique(pairs.s)) == 17


def test_mixture_draws_each_share_from_its_sampler():
    mixture = registry.build(
        "time_sampler",
        "mixture",
        samplers=(UniformTriangle(diagonal_fraction=0.0), BetaGap(diagonal_fraction=0.0, concentration=(20.0, 1.0))),
        weights=(3.0, 1.0),
    )
    pairs = draw(mixture, 40_000)
    long_jumps = ((pairs.t - pairs.s) > 0.9).double().mean().item()
    # a quarter from Beta(20, 1) (almost all > 0.9), three quarters uniform (1% > 0.9)
    assert abs(long_jumps - (0.25 * 0.88 + 0.75 * 0.01)) < 0.02


@pytest.mark.parametrize("whole_path", [False, True])
def test_on_grid_pairs_start_on_a_sampling_grid(whole_path):
    """Grid pairs start at i / k; they end at (i + 1) / k, or anywhere on that jump with `whole_path`."""
    sampler = registry.build("time_sampler", "on_grid", base=UniformTriangle(), fraction=1.0, whole_path=whole_path)
    pairs = draw(sampler, 4000)
    s, t = pairs.s[pairs.n_diagonal :], pairs.t[pairs.n_diagonal :]
    k = torch.tensor([1, 2, 4, 8, 16], dtype=torch.float64)
    on_grid = lambda v: (v[:, None] * k - torch.round(v[:, None] * k)).abs() < 1e-12  # noqa: E731
    starts = on_grid(s)
    jump = (t - s)[:, None] * k
    if whole_path:
        assert ((jump > 0) & (jump <= 1 + 1e-12) & starts).any(dim=1).all()
        assert not on_grid(t).any(dim=1).all()
    else:
        assert (((jump - 1).abs() < 1e-12) & starts).any(dim=1).all()


def test_shift_moves_times_toward_data():
    factor = 3.0
    shifted = draw(Shift(base=UniformTriangle(diagonal_fraction=1.0), factor=factor), 200_000).t
    # a uniform time becomes density a / (a - (a - 1) tau)^2: CDF tau / (a - (a - 1) tau)
    for tau in (0.25, 0.5, 0.9):
        cdf = tau / (factor - (factor - 1) * tau)
        assert abs((shifted <= tau).double().mean().item() - cdf) < 0.005
    assert torch.equal(shift_time(torch.tensor([0.0, 1.0]), factor), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="factor must be positive"):
        Shift(base=UniformTriangle(), factor=0.0)
