"""Property tests for any component: Hypothesis strategies and checks of the flow-map laws.

Use from your own test file::

    from hypothesis import given
    from flowmap_core import testing

    @given(testing.cases())
    def test_my_interpolant(case):
        testing.check_interpolant(MyInterpolant(), case)

Every check works in float64 and raises `AssertionError` with a message that names the
law that failed and by how much. The laws (DESIGN.md, Prop. 2.2 of the paper):

- interpolants: boundary values and d/dt consistency of `x_t`;
- parameterisations: X_{t,t} = id, the tangent condition d/dt X_{s,t}|_{t=s} = b_s, and
  that `represent` reproduces a closed-form map;
- flow maps (`check_flow_map_identities`): identity, semigroup, tangent, Lagrangian and
  Eulerian equations, for a map given as functions;
- objectives: self-distillation residuals vanish at the exact map and rise off it
  (`check_residual_objective`); any objective's expected value is minimised by the exact
  map beyond Monte Carlo error (`check_minimised_at_exact`).
"""

from collections.abc import Callable, Mapping

import attrs
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from flowmap_core.autodiff import jvp
from flowmap_core.flow_map import FlowMap, expand_time
from flowmap_core.protocols import ExactFlow, Interpolant, Objective, ObjectiveInput, Parameterisation

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=20, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=10)
settings.register_profile("thorough", deadline=None, max_examples=300)

DTYPE = torch.float64

# ------------------------------------------------------------------------ strategies


@attrs.frozen
class Case:
    """One drawn test case: data shape, batch, and times with s <= u <= t.

    The first `n_diagonal` rows have s = u = t; the others have t - s >= `min_gap`.
    `x0`, `x1` are standard normal draws from `seed` (float64).
    """

    seed: int
    data_shape: tuple[int, ...]
    s: Tensor
    u: Tensor
    t: Tensor
    n_diagonal: int

    @property
    def batch(self) -> int:
        return self.s.shape[0]

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + offset)

    def normal(self, offset: int = 0) -> Tensor:
        """A `(batch, *data_shape)` standard normal tensor, fixed by the seed and `offset`."""
        return torch.randn((self.batch, *self.data_shape), generator=self.generator(offset), dtype=DTYPE)

    @property
    def x0(self) -> Tensor:
        return self.normal(0)

    @property
    def x1(self) -> Tensor:
        return self.normal(1)

    def off_diagonal(self) -> slice:
        return slice(self.n_diagonal, None)


def data_shapes() -> st.SearchStrategy[tuple[int, ...]]:
    """Small data shapes: vectors of dimension 1-4 and tiny images."""
    return st.one_of(st.tuples(st.integers(1, 4)), st.sampled_from([(2, 3), (1, 3, 3)]))


@st.composite
def cases(
    draw: st.DrawFn,
    shapes: st.SearchStrategy[tuple[int, ...]] | None = None,
    max_batch: int = 6,
    min_gap: float = 0.02,
) -> Case:
    """A `Case`: a data shape, a batch, diagonal rows first, then pairs s < u < t."""
    shape = draw(shapes if shapes is not None else data_shapes())
    n_diag = draw(st.integers(0, 2))
    n_off = draw(st.integers(1, max_batch))
    unit = st.floats(0.0, 1.0, allow_nan=False)
    diag = [draw(unit) for _ in range(n_diag)]
    s, u, t = [], [], []
    for _ in range(n_off):
        start = draw(st.floats(0.0, 1.0 - min_gap))
        end = draw(st.floats(start + min_gap, 1.0))
        fraction = draw(st.floats(0.1, 0.9))
        s.append(start)
        t.append(end)
        u.append(start + fraction * (end - start))
    as_tensor = lambda values: torch.tensor(diag + values, dtype=DTYPE)  # noqa: E731
    return Case(
        seed=draw(st.integers(0, 2**31 - 1)),
        data_shape=shape,
        s=as_tensor(s),
        u=as_tensor(u),
        t=as_tensor(t),
        n_diagonal=n_diag,
    )


# --------------------------------------------------------------------------- helpers


def assert_close(actual: Tensor, expected: Tensor, law: str, atol: float = 1e-9, rtol: float = 1e-9) -> None:
    """Assert `actual == expected` elementwise within tolerance, naming the law if not."""
    if actual.shape != expected.shape:
        raise AssertionError(f"{law}: shapes differ, {tuple(actual.shape)} vs {tuple(expected.shape)}")
    error = (actual - expected).abs()
    bound = atol + rtol * expected.abs()
    if not bool((error <= bound).all()):
        raise AssertionError(f"{law} fails: largest error {error.max().item():.3e} (atol {atol:g}, rtol {rtol:g})")


@attrs.frozen
class PerturbedFlow:
    """A closed-form flow with its mean velocity perturbed: V'_{s,t}(x) = V_{s,t}(x) + a phi,
    phi = sqrt(2) sin(2 pi (3 x + 5 s + 7 t) + 1) (root-mean-square 1, so the map is
    perturbed by about `amplitude`). Not a flow any more: objectives must notice."""

    exact: ExactFlow
    amplitude: float

    @property
    def data_shape(self) -> tuple[int, ...]:
        return self.exact.data_shape

    @property
    def interpolant(self) -> Interpolant:
        return self.exact.interpolant

    def _phi(self, x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        return 2**0.5 * torch.sin(2 * torch.pi * (3 * x + expand_time(5 * s + 7 * t, x)) + 1.0)

    def mean_velocity(self, x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        return self.exact.mean_velocity(x, s, t) + self.amplitude * self._phi(x, s, t)

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        return self.mean_velocity(x, t, t)

    def flow_map(self, x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        return x + expand_time(t - s, x) * self.mean_velocity(x, s, t)

    def sample_data(self, n: int, *, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
        return self.exact.sample_data(n, generator=generator, dtype=dtype)


class ExactNetwork(nn.Module):
    """A backbone whose outputs make `parameterisation` reproduce the closed-form map `exact`."""

    def __init__(self, exact: ExactFlow, parameterisation: Parameterisation):
        super().__init__()
        self.exact = exact
        self.parameterisation = parameterisation

    def forward(self, x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        return self.parameterisation.represent(self.exact, x, s, t)


def exact_flow_map(exact: ExactFlow, parameterisation: Parameterisation, perturbation: float = 0.0) -> FlowMap:
    """The closed-form map `exact` read through `parameterisation`, optionally perturbed
    by `perturbation` (see `PerturbedFlow`)."""
    flow = PerturbedFlow(exact, perturbation) if perturbation else exact
    return FlowMap(net=ExactNetwork(flow, parameterisation), parameterisation=parameterisation)


def triangle_case(n: int, data_shape: tuple[int, ...], seed: int = 0) -> Case:
    """`n` pairs uniform on the triangle s < t (u the midpoint): the training distribution."""
    generator = torch.Generator().manual_seed(seed)
    a, b = torch.rand((2, n), generator=generator, dtype=DTYPE)
    s, t = torch.minimum(a, b), torch.maximum(a, b)
    return Case(seed=seed, data_shape=tuple(data_shape), s=s, u=(s + t) / 2, t=t, n_diagonal=0)


def _d_dt(fn: Callable[[Tensor], Tensor], t: Tensor) -> tuple[Tensor, Tensor]:
    return jvp(fn, (t,), (torch.ones_like(t),))


# ---------------------------------------------------------------------------- checks


def check_interpolant(interpolant: Interpolant, case: Case, atol: float = 1e-10) -> None:
    """Boundary values alpha(0)=1, beta(0)=0, alpha(1)=0, beta(1)=1, x_0 = x0, x_1 = x1, and
    the returned derivatives equal the time derivatives of alpha, beta and x_t (forward AD)."""
    x0, x1, t = case.x0, case.x1, case.t
    ends = torch.tensor([0.0, 1.0], dtype=DTYPE)
    c = interpolant.coefficients(ends)
    assert_close(c.alpha, torch.tensor([1.0, 0.0], dtype=DTYPE), "boundary alpha(0) = 1, alpha(1) = 0", atol)
    assert_close(c.beta, torch.tensor([0.0, 1.0], dtype=DTYPE), "boundary beta(0) = 0, beta(1) = 1", atol)
    zeros, ones = torch.zeros_like(t), torch.ones_like(t)
    assert_close(interpolant.interpolate(x0, x1, zeros).xt, x0, "x_t at t = 0 equals x0", atol)
    assert_close(interpolant.interpolate(x0, x1, ones).xt, x1, "x_t at t = 1 equals x1", atol)

    coefficients = interpolant.coefficients(t)
    _, alpha_dot = _d_dt(lambda tau: interpolant.coefficients(tau).alpha, t)
    _, beta_dot = _d_dt(lambda tau: interpolant.coefficients(tau).beta, t)
    assert_close(coefficients.alpha_dot, alpha_dot, "alpha_dot = d alpha / dt", atol)
    assert_close(coefficients.beta_dot, beta_dot, "beta_dot = d beta / dt", atol)
    point = interpolant.interpolate(x0, x1, t)
    _, dxt = _d_dt(lambda tau: interpolant.interpolate(x0, x1, tau).xt, t)
    assert_close(point.dxt, dxt, "dxt = d/dt x_t", atol)


def check_parameterisation(
    parameterisation: Parameterisation,
    net: Callable[..., Tensor],
    case: Case,
    exact: ExactFlow | None = None,
    cond: Mapping[str, Tensor] | None = None,
    atol: float = 1e-9,
) -> None:
    """X_{t,t}(x) = x; d/dt X_{s,t}(x)|_{t=s} = V_{s,s}(x) = b_s(x); output shapes; and, given a
    closed-form map `exact` on the case's data shape, that `represent` reproduces it."""
    X = FlowMap(net=net, parameterisation=parameterisation, cond=dict(cond or {}))
    x, s, t = case.x0, case.s, case.t
    V = X.mean_velocity(x, s, t)
    if V.shape != x.shape:
        raise AssertionError(f"mean velocity has shape {tuple(V.shape)}, expected the data's {tuple(x.shape)}")
    assert_close(X(x, t, t), x, "identity X_{t,t}(x) = x", atol)
    _, tangent = _d_dt(lambda tau: X(x, s, tau), s)
    assert_close(tangent, X.velocity(x, s), "tangent condition d/dt X_{s,t}(x)|_{t=s} = b_s(x)", atol)
    if exact is not None:
        read = exact_flow_map(exact, parameterisation)
        rows = case.off_diagonal()
        if parameterisation.fixed_t is not None:  # a single-time map reproduces X_{s,fixed_t} only
            t = torch.full_like(t, parameterisation.fixed_t)
        assert_close(
            read(x[rows], s[rows], t[rows]),
            exact.flow_map(x[rows], s[rows], t[rows]),
            "represent(exact) reproduces X_{s,t}",
            atol,
        )
        if parameterisation.fixed_t is None:
            assert_close(read.velocity(x, s), exact.velocity(x, s), "represent(exact) reproduces b_s", atol)


def check_flow_map_identities(
    X: Callable[[Tensor, Tensor, Tensor], Tensor],
    b: Callable[[Tensor, Tensor], Tensor],
    case: Case,
    atol: float = 1e-8,
) -> None:
    """For a map `X(x, s, t)` claimed to be the flow of `b(x, t)`: X_{t,t} = id; semigroup
    X_{u,t}(X_{s,u}(x)) = X_{s,t}(x); tangent d/dt X_{s,t}|_{t=s} = b_s; Lagrangian
    d/dt X_{s,t}(x) = b_t(X_{s,t}(x)); Eulerian d/ds X_{s,t}(x) + grad_x X_{s,t}(x) . b_s(x) = 0."""
    x, s, u, t = case.x0, case.s, case.u, case.t
    assert_close(X(x, t, t), x, "identity X_{t,t}(x) = x", atol)
    assert_close(X(X(x, s, u), u, t), X(x, s, t), "semigroup X_{u,t}(X_{s,u}(x)) = X_{s,t}(x)", atol, 1e-7)
    _, tangent = _d_dt(lambda tau: X(x, s, tau), s)
    assert_close(tangent, b(x, s), "tangent d/dt X_{s,t}(x)|_{t=s} = b_s(x)", atol, 1e-7)
    Xst, dX_dt = _d_dt(lambda tau: X(x, s, tau), t)
    assert_close(dX_dt, b(Xst, t), "Lagrangian d/dt X_{s,t}(x) = b_t(X_{s,t}(x))", atol, 1e-7)
    _, eulerian = jvp(lambda y, sigma: X(y, sigma, t), (x, s), (b(x, s), torch.ones_like(s)))
    assert_close(eulerian, torch.zeros_like(x), "Eulerian d/ds X_{s,t}(x) + grad_x X_{s,t}(x) . b_s(x) = 0", atol)


def objective_input(
    case: Case,
    exact: ExactFlow,
    parameterisation: Parameterisation,
    perturbation: float = 0.0,
    rows: slice = slice(None),
) -> ObjectiveInput:
    """An objective's input for `case`, with data drawn from `exact` and student = teacher =
    the exact map read through `parameterisation` (perturbed by `perturbation`)."""
    if tuple(case.data_shape) != tuple(exact.data_shape):
        raise ValueError(f"case data shape {case.data_shape} differs from the exact flow's {exact.data_shape}")
    flow = exact_flow_map(exact, parameterisation, perturbation)
    inp = ObjectiveInput(
        x0=case.x0,
        x1=exact.sample_data(case.batch, generator=case.generator(1), dtype=DTYPE),
        s=case.s,
        t=case.t,
        interpolant=exact.interpolant,
        student=flow,
        teacher=flow,
        n_diagonal=case.n_diagonal,
        u=case.u,
        generator=case.generator(2),
    )
    return inp.rows(rows)


def check_residual_objective(
    objective: Objective,
    exact: ExactFlow,
    parameterisation: Parameterisation,
    case: Case,
    at_exact: float = 1e-10,
    perturbation: float = 1e-2,
    min_rise: float = 1e-4,
) -> None:
    """A self-distillation residual: every per-example value on the case's off-diagonal rows
    is below `at_exact` at the exact map, and their mean rises above `min_rise` when the
    map is perturbed by `perturbation` (`PerturbedFlow`). A residual of a consistency law
    vanishes as t - s -> 0 for any map, so judge the rise on spread-out pairs
    (`triangle_case`), not on near-diagonal ones."""
    rows = case.off_diagonal()
    exact_loss = objective(objective_input(case, exact, parameterisation, rows=rows)).per_example
    if not bool((exact_loss.abs() < at_exact).all()):
        worst = exact_loss.abs().max().item()
        raise AssertionError(f"residual at the exact map is {worst:.3e}, not below {at_exact:g}")
    perturbed = objective(objective_input(case, exact, parameterisation, perturbation, rows=rows)).per_example
    if not perturbed.mean().item() > min_rise:
        rise = perturbed.mean().item()
        raise AssertionError(f"residual of the map perturbed by {perturbation:g} is {rise:.3e}, not above {min_rise:g}")


@attrs.frozen
class MonteCarloComparison:
    """Paired comparison of two losses on the same samples: d_i = perturbed_i - exact_i.

    `excess` is mean(d) and `standard_error` its standard error std(d) / sqrt(n); the
    perturbation is worse beyond Monte Carlo error when `z = excess / standard_error`
    is large (the checks ask z > 5: a false pass needs a 5-sigma fluctuation).
    """

    excess: float
    standard_error: float

    @property
    def z(self) -> float:
        return self.excess / self.standard_error


def compare_at_exact(
    objective: Objective,
    exact: ExactFlow,
    parameterisation: Parameterisation,
    perturbation: float,
    n: int = 50_000,
    seed: int = 0,
    diagonal: bool = True,
) -> MonteCarloComparison:
    """Evaluate `objective` at the exact and at the perturbed map on the same `n` samples
    (times uniform; all on the diagonal if `diagonal`, else pairs s < t) and compare."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=generator, dtype=DTYPE)
    s = t if diagonal else torch.rand(n, generator=generator, dtype=DTYPE) * t
    case = Case(seed=seed, data_shape=exact.data_shape, s=s, u=(s + t) / 2, t=t, n_diagonal=n if diagonal else 0)
    with torch.no_grad():
        base = objective(objective_input(case, exact, parameterisation)).per_example
        worse = objective(objective_input(case, exact, parameterisation, perturbation)).per_example
    d = worse - base
    return MonteCarloComparison(excess=d.mean().item(), standard_error=(d.std() / n**0.5).item())


def check_minimised_at_exact(
    objective: Objective,
    exact: ExactFlow,
    parameterisation: Parameterisation,
    perturbation: float = 0.1,
    n: int = 50_000,
    z: float = 5.0,
    diagonal: bool = True,
) -> MonteCarloComparison:
    """The exact map has a lower expected loss than a perturbed one, beyond Monte Carlo error:
    the paired excess loss exceeds `z` standard errors (see `MonteCarloComparison`)."""
    comparison = compare_at_exact(objective, exact, parameterisation, perturbation, n=n, diagonal=diagonal)
    if not comparison.z > z:
        raise AssertionError(
            f"perturbing the map by {perturbation:g} raised the loss by {comparison.excess:.3e} "
            f"= {comparison.z:.1f} standard errors ({comparison.standard_error:.1e}), not more than {z:g}"
        )
    return comparison


def check_velocity_is_conditional_mean(exact: ExactFlow, n: int = 50_000, seed: int = 0, z: float = 5.0) -> None:
    """E[dx_t/dt | x_t] = b_t(x_t): the residual b_t(x_t) - dx_t/dt is uncorrelated with test
    functions of (x_t, t) (1, x_t, sin(3 x_t), t x_t), each mean within `z` standard errors of 0."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=generator, dtype=DTYPE)
    x0 = torch.randn((n, *exact.data_shape), generator=generator, dtype=DTYPE)
    x1 = exact.sample_data(n, generator=generator, dtype=DTYPE)
    point = exact.interpolant.interpolate(x0, x1, t)
    residual = exact.velocity(point.xt, t) - point.dxt
    tests = {
        "1": torch.ones_like(point.xt),
        "x_t": point.xt,
        "sin(3 x_t)": torch.sin(3 * point.xt),
        "t x_t": expand_time(t, point.xt) * point.xt,
    }
    for name, phi in tests.items():
        products = (phi * residual).flatten(1).sum(1)
        mean, error = products.mean().item(), (products.std() / n**0.5).item()
        if abs(mean) > z * error:
            raise AssertionError(
                f"E[(b_t(x_t) - dx_t/dt) {name}] = {mean:.3e} is {abs(mean) / error:.1f} standard errors from 0: "
                "b_t is not the conditional mean of dx_t/dt"
            )
