"""Every objective at the exact Gaussian flow map, for every interpolant and parameterisation.

- Self-distillation residuals (LSD, ESD, PSD-M, PSD-U, sums of them) are below 1e-10 at
  the exact map (float64) and above 1e-4 when the map is perturbed by 1e-2.
- Every objective's expected value is lower at the exact map than at a perturbed one,
  beyond Monte Carlo error: the paired excess over 50,000 samples exceeds 5 standard
  errors (`flowmap_core.testing.MonteCarloComparison`). For flow matching this is the
  statement that b_t = E[dx_t/dt | x_t] minimises |v - dx_t/dt|^2.
"""

import attrs
import pytest
import torch
from hypothesis import given

from flowmap_components.objectives.flow_matching import FlowMatching
from flowmap_components.stopgrad.policies import FullStopGradient, NoStopGradient
from flowmap_core import registry, testing
from flowmap_core.flow_map import FlowMap
from flowmap_core.protocols import ObjectiveInput
from tests.instances import CONDITIONAL, DISCRETE, TRIGFLOW, instance, instances, is_residual


def two_time_parameterisations():
    """Single-time maps define X_{s,1} only; they are tested with t = 1 below."""
    return [(i, p) for i, p in instances("parameterisation") if p.fixed_t is None]


def grid():
    """(objective, exact flow, parameterisation) over all registered combinations."""
    out = []
    for objective_id, objective in instances("objective"):
        if objective.registry_name in CONDITIONAL | TRIGFLOW:
            continue
        for interpolant_id, interpolant in instances("interpolant"):
            for parameterisation_id, parameterisation in two_time_parameterisations():
                exact = registry.build("exact", "gaussian", interpolant=interpolant)
                out.append(
                    pytest.param(
                        objective, exact, parameterisation, id=f"{objective_id}-{interpolant_id}-{parameterisation_id}"
                    )
                )
    return out


def residual_grid():
    return [p for p in grid() if is_residual(p.values[0])]


GAUSSIAN_2D = testing.data_shapes().filter(lambda shape: shape == (2,))


@pytest.mark.parametrize("objective, exact, parameterisation", residual_grid())
@given(case=testing.cases(shapes=GAUSSIAN_2D))
def test_residual_vanishes_at_exact_map(objective, exact, parameterisation, case):
    rows = case.off_diagonal()
    loss = objective(testing.objective_input(case, exact, parameterisation, rows=rows)).per_example
    assert loss.abs().max().item() < 1e-10


@pytest.mark.parametrize("objective, exact, parameterisation", residual_grid())
def test_residual_rises_off_exact_map(objective, exact, parameterisation):
    case = testing.triangle_case(2048, exact.data_shape)
    testing.check_residual_objective(objective, exact, parameterisation, case, at_exact=1e-10, min_rise=1e-4)


@pytest.mark.parametrize(
    "objective, exact, parameterisation", [p for p in grid() if p.values[0].registry_name not in DISCRETE]
)
def test_exact_map_minimises_expected_loss(objective, exact, parameterisation):
    """For residuals trivially (zero at the exact map); for regressions on the diagonal
    (flow matching) or on a conditional velocity (MeanFlow-style ESD), in expectation."""
    on_diagonal = objective.registry_name in {"flow_matching", "split"}
    comparison = testing.check_minimised_at_exact(
        objective, exact, parameterisation, perturbation=0.1, n=20_000, diagonal=on_diagonal
    )
    assert comparison.excess > 0


def test_flow_matching_excess_is_perturbation_energy():
    """E|b + d - dx|^2 - E|b - dx|^2 = E|d|^2 + 2 E[d . (b - dx)], and the cross term is 0
    because b = E[dx | x_t]: the measured excess equals the energy of d within 5 s.e."""
    exact = registry.build("exact", "gaussian")
    perturbed = testing.PerturbedFlow(exact, 0.1)
    comparison = testing.compare_at_exact(FlowMatching(), exact, instance("parameterisation", "euler"), 0.1, n=50_000)
    generator = torch.Generator().manual_seed(0)  # compare_at_exact's draws: t, then x0 and x1
    t = torch.rand(50_000, generator=generator, dtype=torch.float64)
    case = testing.Case(seed=0, data_shape=(2,), s=t, u=t, t=t, n_diagonal=50_000)
    x1 = exact.sample_data(50_000, generator=case.generator(1), dtype=torch.float64)
    xt = exact.interpolant.interpolate(case.x0, x1, t).xt
    energy = (perturbed.velocity(xt, t) - exact.velocity(xt, t)).pow(2).mean().item()
    assert comparison.z > 5
    assert abs(comparison.excess - energy) < 5 * comparison.standard_error


@pytest.mark.parametrize("policy", [NoStopGradient(), FullStopGradient()])
@pytest.mark.parametrize("name", ["lsd", "esd", "psd"])
def test_residual_value_does_not_depend_on_stopgrad(policy, name):
    exact = registry.build("exact", "gaussian")
    parameterisation = instance("parameterisation", "euler")
    case = testing.triangle_case(256, exact.data_shape)
    inp = testing.objective_input(case, exact, parameterisation, perturbation=0.05)
    default = registry.build("objective", name)(inp).per_example
    other = registry.build("objective", name, stopgrad=policy)(inp).per_example
    assert (default - other).abs().max().item() < 1e-12


def test_psd_rejects_bad_h():
    with pytest.raises(ValueError, match=r"objective.psd.h must be None or in \(0, 1\)"):
        registry.build("objective", "psd", h=1.5)


def test_weighted_sum_needs_matching_weights():
    with pytest.raises(ValueError, match="2 terms but 1 weights"):
        registry.build("objective", "weighted_sum", terms=(FlowMatching(), FlowMatching()), weights=(1.0,))


def limit_case(exact, n=256, gap=1e-6):
    """Pairs s < t with the next level u = s + gap."""
    case = testing.triangle_case(n, exact.data_shape)
    return testing.Case(seed=0, data_shape=case.data_shape, s=case.s, u=case.s + gap, t=case.t, n_diagonal=0)


@pytest.mark.parametrize("velocity", ["conditional", "model"])
def test_consistency_tends_to_esd_as_the_step_shrinks(velocity):
    """(X_{s,t}(x_s) - X_{u,t}(y_u)) / (u - s) -> -(d/ds X + grad X . v): discrete consistency
    with the conditional velocity becomes ESD with it (continuous-time consistency training)."""
    exact = registry.build("exact", "gaussian")
    parameterisation = instance("parameterisation", "euler")
    source = registry.build("velocity", velocity)
    case = limit_case(exact)
    inp = testing.objective_input(case, exact, parameterisation, perturbation=0.05)
    discrete = registry.build("objective", "consistency", velocity=source)(inp).per_example
    continuous = registry.build("objective", "esd", velocity=source)(inp).per_example
    torch.testing.assert_close(discrete, continuous, rtol=1e-3, atol=1e-6)


def test_consistency_distillation_vanishes_at_the_exact_map_as_the_step_shrinks():
    exact = registry.build("exact", "gaussian")
    parameterisation = instance("parameterisation", "euler")
    objective = registry.build("objective", "consistency", velocity=registry.build("velocity", "model"))
    losses = [
        objective(testing.objective_input(limit_case(exact, gap=gap), exact, parameterisation)).per_example.mean()
        for gap in (1e-2, 1e-3)
    ]
    assert losses[1] < 0.02 * losses[0] and losses[1] < 1e-5  # the Euler step's error is O(gap)


@pytest.mark.parametrize("interpolant", ["linear", "trigonometric"])
def test_consistency_sigma_weight_uses_the_interpolants_noise_levels(interpolant):
    """iCT's lambda = 1 / (sigma_s - sigma_u) with sigma = alpha / beta of the run's interpolant:
    (1 - s) / s under the linear one, cot(pi s / 2) under the trigonometric one."""
    exact = registry.build("exact", "gaussian", interpolant=registry.build("interpolant", interpolant))
    single = instance("parameterisation", "single_time")
    case = testing.triangle_case(256, exact.data_shape)
    case = testing.Case(seed=0, data_shape=case.data_shape, s=case.s, u=case.u, t=torch.ones_like(case.t), n_diagonal=0)
    inp = testing.objective_input(case, exact, single, perturbation=0.05)
    plain = registry.build("objective", "consistency")(inp).per_example
    weighted = registry.build("objective", "consistency", sigma_weight=True)(inp).per_example
    sigma = {"linear": lambda s: (1 - s) / s, "trigonometric": lambda s: 1 / torch.tan(torch.pi * s / 2)}[interpolant]
    torch.testing.assert_close(weighted, plain / (sigma(case.s) - sigma(case.u)), rtol=1e-12, atol=0)


@attrs.frozen
class ExactVelocity:
    """A perfect teacher's velocity b_t(x) (sCD from an exact flow-matching model)."""

    exact: object
    needs_interpolant_point: bool = False

    def at(self, inp, x, t, point):
        return self.exact.velocity(x, t)

    def advance(self, inp, x, s, u):
        raise NotImplementedError


@pytest.mark.parametrize("parameterisation", ["trigflow", "single_time"])
def test_scm_vanishes_at_the_exact_map_with_an_exact_velocity(parameterisation):
    """sCM's tangent g = cos(t) d f/dt is the Eulerian derivative of the map to the data end: 0 for the
    exact map closed by the exact velocity (sCD from a perfect teacher) once warmed up (r = 1),
    normalised or not, for any single-time parameterisation; off the map it rises."""
    exact = registry.build("exact", "gaussian", interpolant=registry.build("interpolant", "trigonometric"))
    case = testing.triangle_case(512, exact.data_shape)
    case = testing.Case(seed=0, data_shape=case.data_shape, s=case.s, u=case.u, t=torch.ones_like(case.t), n_diagonal=0)
    for tangent_c in (0.1, None):
        objective = registry.build(
            "objective", "scm", velocity=ExactVelocity(exact), tangent_c=tangent_c, warmup_steps=0
        )
        testing.check_residual_objective(objective, exact, instance("parameterisation", parameterisation), case)


def test_scm_tangent_normalisation_and_warm_up():
    """g / (|g| + c) has norm below 1; the warm-up ramps r linearly to 1 over warmup_steps."""
    exact = registry.build("exact", "gaussian", interpolant=registry.build("interpolant", "trigonometric"))
    case = testing.triangle_case(256, exact.data_shape)
    case = testing.Case(seed=0, data_shape=case.data_shape, s=case.s, u=case.u, t=torch.ones_like(case.t), n_diagonal=0)
    inp = testing.objective_input(case, exact, instance("parameterisation", "trigflow"), perturbation=0.5)
    normalised = registry.build("objective", "scm", tangent_c=0.1)(inp).per_example
    raw = registry.build("objective", "scm", tangent_c=None)(inp).per_example
    assert (normalised * 2 < 1).all() and raw.max() > 1  # mean over D = 2 of the squared unit-bounded g
    objective = registry.build("objective", "scm", warmup_steps=200)
    assert [objective.ramp(k) for k in (0, 50, 200, 10_000)] == [0.0, 0.25, 1.0, 1.0]
    assert registry.build("objective", "scm", warmup_steps=0).ramp(0) == 1.0


def test_scm_needs_the_trigonometric_interpolant():
    objective = registry.build("objective", "scm")
    objective.check_run(interpolant=registry.build("interpolant", "trigonometric"), teacher=None)
    with pytest.raises(ValueError, match="needs train.interpolant = @interpolant.trigonometric"):
        objective.check_run(interpolant=registry.build("interpolant", "linear"), teacher=None)


def test_single_time_map_at_t_1():
    """ESD at t = 1, closed by a teacher's exact velocity (consistency distillation), vanishes
    for the exact single-time map and rises off it. (The single-time map's own V_{s,s} is the
    mean velocity to the data, not b_s, so it cannot close the target itself.)"""
    exact = registry.build("exact", "gaussian")
    case = testing.triangle_case(512, exact.data_shape)
    ones = torch.ones_like(case.t)
    case = testing.Case(seed=0, data_shape=case.data_shape, s=case.s, u=case.u, t=ones, n_diagonal=0)
    single = instance("parameterisation", "single_time")
    teacher = testing.exact_flow_map(exact, instance("parameterisation", "euler"))
    esd = registry.build("objective", "esd")
    at_exact = esd(attrs.evolve(testing.objective_input(case, exact, single), teacher=teacher)).per_example
    assert at_exact.max().item() < 1e-10
    off = esd(attrs.evolve(testing.objective_input(case, exact, single, 1e-2), teacher=teacher)).per_example
    assert off.mean().item() > 1e-4


class TwoClassGaussians:
    """Two equally likely classes N(m_c, I) under the linear interpolant: the class velocities
    b(x, c) are the Gaussian ones, the unconditional b(x, null) = sum_c p(c | x_t) b(x, c)."""

    means = ((2.0, 0.0), (-2.0, 1.0))

    def __init__(self):
        self.flows = [registry.build("exact", "gaussian", mean=m, std=(1.0, 1.0)) for m in self.means]

    def velocity(self, x, t, label):
        per_class = torch.stack([flow.velocity(x, t) for flow in self.flows])  # (2, batch, dim)
        beta = t[:, None]
        variance = (1 - t) ** 2 + t**2  # alpha^2 + beta^2 std^2, std = 1
        log_p = torch.stack(
            [-((x - beta * torch.tensor(m, dtype=x.dtype)) ** 2).sum(1) / (2 * variance) for m in self.means]
        )
        posterior = torch.softmax(log_p, dim=0)
        unconditional = (posterior[..., None] * per_class).sum(0)
        chosen = per_class[label.clamp(min=0), torch.arange(len(x))]
        return torch.where((label < 0)[:, None], unconditional, chosen)


class GuidedExactNet(torch.nn.Module):
    """A guided 'backbone' reading the exact velocities: v(x; c, w) = (1 - w) b(x, null) + w b(x, c)."""

    def __init__(self, case, perturbation=0.0):
        super().__init__()
        self.case, self.perturbation = case, perturbation

    def forward(self, x, s, t, label, guidance):
        null = torch.full_like(label, -1)
        w = guidance[:, None]
        v = (1 - w) * self.case.velocity(x, t, null) + w * self.case.velocity(x, t, label)
        return (v + self.perturbation * torch.sin(3 * x + w)).unsqueeze(1)


def test_guided_flow_matching_at_the_exact_guided_velocity():
    """The guidance term vanishes at the exact guided velocity and rises off it; the flow
    matching term is minimised there beyond Monte Carlo error (paired, > 5 standard errors)."""
    case = TwoClassGaussians()
    g = torch.Generator().manual_seed(0)
    n = 40_000
    label = torch.randint(0, 2, (n,), generator=g)
    label[torch.rand(n, generator=g) < 0.1] = -1
    true_class = torch.where(label < 0, torch.randint(0, 2, (n,), generator=g), label)
    x1 = torch.tensor(case.means, dtype=torch.float64)[true_class] + torch.randn(n, 2, generator=g, dtype=torch.float64)
    x0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    t = torch.rand(n, generator=g, dtype=torch.float64)
    w = 3 * torch.rand(n, generator=g, dtype=torch.float64)
    cond = {"label": label, "guidance": w}
    euler = instance("parameterisation", "euler")
    losses = {}
    for perturbation in (0.0, 0.1):
        X = FlowMap(net=GuidedExactNet(case, perturbation), parameterisation=euler, cond=cond)
        inp = ObjectiveInput(
            x0=x0, x1=x1, s=t, t=t, interpolant=case.flows[0].interpolant, student=X, teacher=X, n_diagonal=n
        )
        losses[perturbation] = registry.build("objective", "guided_flow_matching")(inp)
    assert losses[0.0].terms["guidance"].item() < 1e-20
    assert losses[0.1].terms["guidance"].item() > 1e-3
    d = losses[0.1].per_example - losses[0.0].per_example
    assert d.mean() > 5 * d.std() / n**0.5


def test_guided_flow_matching_at_w0_does_not_read_the_label():
    """b^0 = b(x, null) carries no class: on rows at w = 0 (conditioning.guided's edge, whose
    labels are another example's) the loss is the same whatever the label, at and off the
    exact guided velocity."""
    case = TwoClassGaussians()
    g = torch.Generator().manual_seed(1)
    n = 2_000
    x1 = torch.tensor(case.means, dtype=torch.float64)[torch.randint(0, 2, (n,), generator=g)]
    x1 = x1 + torch.randn(n, 2, generator=g, dtype=torch.float64)
    x0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    t = torch.rand(n, generator=g, dtype=torch.float64)
    w = torch.zeros(n, dtype=torch.float64)
    euler = instance("parameterisation", "euler")
    for perturbation in (0.0, 0.1):
        per_example = []
        for label in (torch.zeros(n, dtype=torch.int64), torch.randint(0, 2, (n,), generator=g)):
            X = FlowMap(
                net=GuidedExactNet(case, perturbation), parameterisation=euler, cond={"label": label, "guidance": w}
            )
            inp = ObjectiveInput(
                x0=x0, x1=x1, s=t, t=t, interpolant=case.flows[0].interpolant, student=X, teacher=X, n_diagonal=n
            )
            per_example.append(registry.build("objective", "guided_flow_matching")(inp).per_example)
        torch.testing.assert_close(per_example[0], per_example[1], rtol=0, atol=0)
