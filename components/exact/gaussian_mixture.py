"""Ground truth for a Gaussian mixture: N(0, I) -> sum_k w_k N(m_k, diag(sigma_k^2)) in d dimensions.

The velocity is analytic; the flow map is the ODE solution, integrated in float64 by an
adaptive 8th-order Dormand-Prince solver (`dop853`, numpy) at a tight tolerance. Forward-mode
derivatives of the map (`torch.func.jvp`) are exact up to the same tolerance: they come
from the variational equation, not from differentiating the solver's steps.
"""

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import gin
import numpy as np
import torch
from scipy.integrate._ivp import dop853_coefficients
from torch import Tensor

from flowmap_components.exact import mean_velocity
from flowmap_components.interpolants.linear import Linear
from flowmap_core.flow_map import expand_time
from flowmap_core.protocols import Interpolant
from flowmap_core.registry import register
from flowmap_core.typing import Data, Times, typechecked
from flowmap_core.validators import arguments, integer, positive, positive_finite, positive_integer

DTYPE = torch.float64
CACHE_SIZE = 16
CACHE_ROWS = 1024

# Dormand and Prince's 8(5,3) pair (Hairer, Norsett, Wanner, Solving ODEs I, II.10; the
# coefficients scipy's DOP853 uses): 12 stages, a 13th at the new point (first same as last).
_STAGES = dop853_coefficients.N_STAGES
_A = dop853_coefficients.A[:_STAGES, :_STAGES]
_B = dop853_coefficients.B
_C = dop853_coefficients.C[:_STAGES]
_E3 = dop853_coefficients.E3
_E5 = dop853_coefficients.E5


class SolverError(RuntimeError):
    """The adaptive solver did not reach the end within its step budget."""


def dop853(
    prepare: Callable[[np.ndarray], Sequence[Any]],
    rhs: Callable[[Any, np.ndarray], np.ndarray],
    y0: np.ndarray,
    *,
    rtol: float,
    atol: float,
    max_steps: int = 100_000,
) -> np.ndarray:
    """y(1) of dy/dtau = f(tau, y), y(0) = y0, for every row of `y0` `(batch, n)` at once (float64),
    by the adaptive 8th-order Dormand-Prince method (DOP853).

    f is split in two so that the time-only work of a step is done once: `prepare(tau)`
    takes times `(stages, batch)` and returns one context per stage, and `rhs(context, y)`
    is f at that stage's times. Each row has its own step size and its own error test
    (scipy's DOP853 norm, with scale atol + rtol max(|y|, |y_new|), at most 1), so a row's
    result does not depend on the other rows. Steps change by 0.9 err^(-1/8), within
    [0.2, 10]. Runs in numpy: on small arrays a numpy operation costs a third of a torch one.
    """
    batch, n = y0.shape
    tau = np.zeros(batch)
    h = np.full(batch, min(1.0, 0.1 * rtol ** (1 / 8)))
    y = y0
    k = np.empty((_STAGES + 1, batch, n))
    k[0] = rhs(prepare(tau[None])[0], y)
    nodes = np.append(_C[1:], 1.0)[:, None]
    for _ in range(max_steps):
        remaining = 1 - tau
        active = remaining > 0
        if not active.any():
            return y
        last = h >= remaining
        h = np.where(last, remaining, h)
        contexts = prepare(tau[None] + nodes * h[None])
        step = h[:, None]
        for i in range(1, _STAGES):
            k[i] = rhs(contexts[i - 1], y + step * np.tensordot(_A[i, :i], k[:i], axes=1))
        y_new = y + step * np.tensordot(_B, k[:_STAGES], axes=1)
        k[_STAGES] = rhs(contexts[-1], y_new)
        scale = atol + rtol * np.maximum(np.abs(y), np.abs(y_new))
        err5 = (np.tensordot(_E5, k, axes=1) / scale) ** 2
        err3 = (np.tensordot(_E3, k, axes=1) / scale) ** 2
        err5, err3 = err5.sum(axis=1), err3.sum(axis=1)
        denominator = np.sqrt(np.maximum((err5 + 0.01 * err3) * n, 1e-300))
        ratio = h * err5 / denominator
        accept = active & (ratio <= 1)
        y = np.where(accept[:, None], y_new, y)
        k[0] = np.where(accept[:, None], k[_STAGES], k[0])
        tau = np.where(accept, np.where(last, 1.0, tau + h), tau)
        factor = np.clip(0.9 * np.maximum(ratio, 1e-12) ** (-1 / 8), 0.2, 10.0)
        h = h * np.where(accept, factor, np.minimum(factor, 1.0))
    raise SolverError(f"the adaptive solver took more than {max_steps} steps (rtol {rtol:g}, atol {atol:g})")


def mixture_velocity(xp: Any, x: Any, c: Sequence[Any], params: Sequence[Any], w: Any = None) -> Any:
    """b_t(x) of the mixture, for x `(batch, d)` and coefficients c = (alpha, beta, alpha', beta')
    `(batch,)` each, in numpy or torch (`xp`); params = (means, variances `(k, d)`, log weights).

    Given `w`, also returns grad_x b_t(x) w = sum_k p_k c_k w + sum_k b^k (grad p_k . w), with
    grad log p_k = g_k - sum_j p_j g_j, g_k = -(x - beta m_k) / nu_k,
    c_k = (alpha alpha' + beta beta' sigma_k^2) / nu_k.
    """
    means, variance, log_weights = params
    a, b, a_dot, b_dot = (v[:, None, None] for v in c)
    nu = a**2 + b**2 * variance
    diff = x[:, None, :] - b * means
    log_p = log_weights - 0.5 * xp.sum(diff**2 / nu + xp.log(nu), axis=-1)
    p = xp.exp(log_p - xp.amax(log_p, axis=1, keepdims=True))
    p = p / xp.sum(p, axis=1, keepdims=True)
    slope = (a * a_dot + b * b_dot * variance) / nu
    b_k = b_dot * means + slope * diff
    velocity = xp.sum(p[..., None] * b_k, axis=1)
    if w is None:
        return velocity
    g_w = -xp.sum(diff / nu * w[:, None, :], axis=-1)
    dp = p * (g_w - xp.sum(p * g_w, axis=1, keepdims=True))
    return velocity, xp.sum(p[..., None] * slope * w[:, None, :], axis=1) + xp.sum(dp[..., None] * b_k, axis=1)


def _per_component(value: tuple, k: int, name: str) -> tuple:
    if len(value) == 1:
        return value * k
    if len(value) != k:
        raise ValueError(f"exact.gaussian_mixture.{name} has {len(value)} entries for {k} components: give one or {k}")
    return value


def _as_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"exact.gaussian_mixture.{name} must hold finite numbers, got {value!r}")
    return float(value)


def _means(value: object) -> tuple[tuple[float, ...], ...]:
    rows = tuple(tuple(_as_float(v, "means") for v in row) for row in value)
    if not rows or not rows[0] or any(len(row) != len(rows[0]) for row in rows):
        raise ValueError(
            f"exact.gaussian_mixture.means must be a non-empty list of points of one dimension, got {value}"
        )
    return rows


def _stds(instance: "GaussianMixtureFlow", attribute: attrs.Attribute, value: tuple) -> None:
    k, d = len(instance.means), len(instance.means[0])
    for row in _per_component(value, k, "stds"):
        entries = row if isinstance(row, tuple | list) else (row,)
        if len(entries) not in (1, d) or not all(_as_float(v, "stds") > 0 for v in entries):
            raise ValueError(
                f"exact.gaussian_mixture.stds: each component's std is one positive number (isotropic) "
                f"or {d} positive numbers (diagonal), got {row!r}"
            )


def _weights(instance: "GaussianMixtureFlow", attribute: attrs.Attribute, value: tuple) -> None:
    weights = [_as_float(v, "weights") for v in _per_component(value, len(instance.means), "weights")]
    if min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"exact.gaussian_mixture.weights must be non-negative with a positive sum, got {value}")


@gin.register(module="exact")
@arguments(
    "exact.mixture_means", dimension=positive_integer, components=positive_integer, separation=positive, seed=integer
)
def mixture_means(
    dimension: int = 2, components: int = 3, separation: float = 4.0, layout: str = "simplex", seed: int = 0
) -> tuple[tuple[float, ...], ...]:
    """Means of `components` Gaussians in `dimension` dimensions, centred at the origin.

    `layout='simplex'`: the vertices of a regular simplex, every pair `separation` apart
    (needs components <= dimension + 1; its span has dimension components - 1, whatever
    `dimension`). `layout='random'`: Gaussian draws (fixed by `seed`) spread over all
    dimensions, scaled so that the closest pair is `separation` apart.
    """
    if layout == "simplex":
        if components > dimension + 1:
            raise ValueError(
                f"exact.mixture_means: a simplex of {components} vertices needs dimension >= {components - 1}, "
                f"got {dimension}; use layout='random'"
            )
        # standard basis vectors of R^k, centred, are pairwise sqrt(2) apart; rotate them into R^d
        corners = torch.eye(components, dtype=DTYPE) - 1 / components
        basis, _ = torch.linalg.qr(corners.T[:, : max(components - 1, 1)])
        points = corners @ basis * (separation / math.sqrt(2))
        means = torch.zeros((components, dimension), dtype=DTYPE)
        means[:, : points.shape[1]] = points[:, :dimension]
    elif layout == "random":
        generator = torch.Generator().manual_seed(seed)
        means = torch.randn((components, dimension), generator=generator, dtype=DTYPE)
        means = means - means.mean(0)
        if components > 1:
            closest = torch.pdist(means).min()
            means = means * (separation / closest)
    else:
        raise ValueError(f"exact.mixture_means.layout must be 'simplex' or 'random', got {layout!r}")
    return tuple(tuple(float(v) for v in row) for row in means)


def _numpy(v: Tensor) -> np.ndarray:
    """A float64 numpy copy of `v`. Inside `torch.func.jvp` the tensors an autograd.Function's
    `jvp` sees can be functorch wrappers without storage; `tolist` still reads them."""
    v = v.detach().cpu()
    try:
        return v.numpy().astype(np.float64, copy=False)
    except RuntimeError:
        return np.asarray(v.tolist(), dtype=np.float64).reshape(v.shape)


class _Transport(torch.autograd.Function):
    """X_{s,t}(x) by the solver, with its forward-mode derivative from the variational equation:

        dX = grad_x X_{s,t}(x) (dx - b_s(x) ds) + b_t(X_{s,t}(x)) dt,

    where grad_x X_{s,t}(x) w is the solution at t of dw/dr = grad_x b_r(X_{s,r}(x)) w, w(s) = w.
    """

    @staticmethod
    def forward(flow: "GaussianMixtureFlow", x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        return flow._solve(x.to(DTYPE), s.to(DTYPE), t.to(DTYPE)).to(x.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        flow, x, s, t = inputs
        ctx.flow = flow
        ctx.save_for_forward(x, s, t, output)

    @staticmethod
    def jvp(ctx, _flow: None, dx: Tensor | None, ds: Tensor | None, dt: Tensor | None) -> Tensor:
        flow: GaussianMixtureFlow = ctx.flow
        dtype = ctx.saved_tensors[0].dtype
        x, s, t, X = (v.to(DTYPE) for v in ctx.saved_tensors)
        out = torch.zeros_like(X)
        w = torch.zeros_like(x) if dx is None else dx.to(DTYPE)
        if ds is not None:
            w = w - expand_time(ds.to(DTYPE), x) * flow._velocity(x, s)
        if bool((w != 0).any()):
            out = out + flow._solve(x, s, t, w)[1]
        if dt is not None:
            out = out + expand_time(dt.to(DTYPE), X) * flow._velocity(X, t)
        return out.to(dtype)


@register("exact", "gaussian_mixture")
@attrs.define(frozen=True, kw_only=True)
class GaussianMixtureFlow:
    """N(0, I) -> sum_k w_k N(m_k, diag(sigma_k^2)) in d dimensions: analytic velocity, solved map.

    Under `x_t = alpha x0 + beta x1`, given component k, x_t ~ N(beta m_k, nu_k) with
    nu_k = alpha^2 + beta^2 sigma_k^2 (per dimension), and the velocity is that of
    `exact.gaussian`, b^k_t(x) = beta' m_k + (alpha alpha' + beta beta' sigma_k^2) / nu_k (x - beta m_k).
    The mixture's velocity is their posterior mean,

        b_t(x) = sum_k p_t(k | x) b^k_t(x),   p_t(k | x) ∝ w_k N(x; beta m_k, diag(nu_k)),

    and X_{s,t}(x) solves dX/dr = b_r(X), X(s) = x, integrated in float64 (`dop853`,
    relative and absolute tolerances `rtol`, `atol`; t < s integrates backwards). It has
    forward-mode derivatives (`torch.func.jvp`, by the variational equation) but no reverse
    mode: use it as a target, not inside a loss backpropagated through X*.

    `stds` holds one entry per component (or one for all): a number (isotropic) or d
    numbers (diagonal). `weights` default to equal. `mixture_means` lays out the means of
    a d-dimensional mixture with a given separation; the Lipschitz constant of b grows
    with separation / std.
    """

    means: tuple[tuple[float, ...], ...] = attrs.field(default=((-2.0, 0.0), (2.0, 0.0), (0.0, 2.0)), converter=_means)
    stds: tuple = attrs.field(default=(0.5, (0.7, 0.4), 0.8), converter=tuple, validator=_stds)
    weights: tuple[float, ...] = attrs.field(default=(1.0,), converter=tuple, validator=_weights)
    interpolant: Interpolant = attrs.field(factory=Linear)
    rtol: float = attrs.field(default=1e-10, validator=positive_finite)
    atol: float = attrs.field(default=1e-10, validator=positive_finite)

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (len(self.means[0]),)

    @property
    def num_components(self) -> int:
        return len(self.means)

    _tensors: tuple[Tensor, Tensor, Tensor] = attrs.field(init=False, repr=False, eq=False)
    _arrays: tuple[np.ndarray, np.ndarray, np.ndarray] = attrs.field(init=False, repr=False, eq=False)
    _solved: OrderedDict = attrs.field(init=False, repr=False, eq=False, factory=OrderedDict)

    def __attrs_post_init__(self) -> None:
        k, d = self.num_components, self.data_shape[0]
        means = torch.tensor(self.means, dtype=DTYPE)
        stds = [row if isinstance(row, tuple | list) else (row,) for row in _per_component(self.stds, k, "stds")]
        variance = torch.tensor(
            [[float(v) ** 2 for v in row] * (d if len(row) == 1 else 1) for row in stds], dtype=DTYPE
        )
        weights = torch.tensor(_per_component(self.weights, k, "weights"), dtype=DTYPE)
        object.__setattr__(self, "_tensors", (means, variance, weights / weights.sum()))
        object.__setattr__(self, "_arrays", (means.numpy(), variance.numpy(), np.log(self._tensors[2].numpy())))

    def parameters(self, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
        """Means `(k, d)`, variances `(k, d)` and normalised weights `(k,)`, float64."""
        return tuple(p.to(device) for p in self._tensors)

    def _velocity(self, x: Tensor, t: Tensor) -> Tensor:
        """b_t(x) for x `(batch, d)`, float64 torch (differentiable)."""
        means, variance, weights = self.parameters(x.device)
        c = self.interpolant.coefficients(t)
        coefficients = (c.alpha, c.beta, c.alpha_dot, c.beta_dot)
        return mixture_velocity(torch, x, coefficients, (means, variance, weights.log()))

    def _solve(self, x: Tensor, s: Tensor, t: Tensor, w: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """X_{s,t}(x) (and, given `w`, grad_x X_{s,t}(x) w) in float64, integrating in
        tau in [0, 1] with r = s + tau (t - s): dX/dtau = (t - s) b_r(X).

        The last `CACHE_SIZE` solutions of small batches are kept: derivative checks ask for
        the same X_{s,t}(x) several times (as a value and inside each JVP)."""
        arrays = [_numpy(v) for v in (x, s, t) + (() if w is None else (w,))]
        key = tuple((a.shape, a.tobytes()) for a in arrays) if x.numel() <= CACHE_ROWS * x[0].numel() else None
        if key is not None and key in self._solved:
            self._solved.move_to_end(key)
            found = self._solved[key]
            return found.to(x.device) if w is None else tuple(v.to(x.device) for v in found)
        out = self._integrate(x, s, t, w)
        if key is not None:
            self._solved[key] = out
            if len(self._solved) > CACHE_SIZE:
                self._solved.popitem(last=False)
        return out

    def _integrate(self, x: Tensor, s: Tensor, t: Tensor, w: Tensor | None) -> Tensor | tuple[Tensor, Tensor]:
        shape, device = x.shape, x.device
        d = self.data_shape[0]
        params = self._arrays
        s_np, t_np = _numpy(s), _numpy(t)
        gap = (t_np - s_np)[:, None]

        def prepare(tau: np.ndarray) -> list[tuple[np.ndarray, ...]]:
            r = torch.from_numpy((s_np + tau * (t_np - s_np)).reshape(-1))
            c = self.interpolant.coefficients(r)
            values = [_numpy(v).reshape(tau.shape) for v in (c.alpha, c.beta, c.alpha_dot, c.beta_dot)]
            return [tuple(v[i] for v in values) for i in range(tau.shape[0])]

        def rhs(c: tuple[np.ndarray, ...], y: np.ndarray) -> np.ndarray:
            return gap * mixture_velocity(np, y, c, params)

        def augmented(c: tuple[np.ndarray, ...], y: np.ndarray) -> np.ndarray:
            velocity, tangent = mixture_velocity(np, y[:, :d], c, params, y[:, d:])
            return gap * np.concatenate([velocity, tangent], axis=1)

        y0 = _numpy(x).reshape(-1, d)
        if w is not None:
            y0 = np.concatenate([y0, _numpy(w).reshape(-1, d)], axis=1)
        y1 = dop853(prepare, rhs if w is None else augmented, y0, rtol=self.rtol, atol=self.atol)
        out = torch.from_numpy(y1).to(device)
        if w is None:
            return out.reshape(shape)
        return out[:, :d].reshape(shape), out[:, d:].reshape(shape)

    def _check_shape(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"exact.gaussian_mixture is {self.data_shape[0]}-dimensional; got x of shape {tuple(x.shape)}"
            )

    @typechecked
    def velocity(self, x: Data, t: Times) -> Data:
        self._check_shape(x)
        return self._velocity(x.to(DTYPE), t.to(DTYPE)).to(x.dtype)

    @typechecked
    def flow_map(self, x: Data, s: Times, t: Times) -> Data:
        self._check_shape(x)
        return _Transport.apply(self, x, s, t)

    @typechecked
    def mean_velocity(self, x: Data, s: Times, t: Times) -> Data:
        return mean_velocity.from_flow_map(self, x, s, t)

    def sample(self, n: int, *, generator: torch.Generator, dtype: torch.dtype = DTYPE) -> tuple[Tensor, Tensor]:
        """`n` data points and their component labels, drawn with `generator` only."""
        means, variance, weights = self.parameters(generator.device)
        label = torch.multinomial(weights, n, replacement=True, generator=generator)
        z = torch.randn((n, self.data_shape[0]), generator=generator, device=generator.device, dtype=DTYPE)
        return (means[label] + variance[label].sqrt() * z).to(dtype), label

    def sample_data(self, n: int, *, generator: torch.Generator, dtype: torch.dtype = DTYPE) -> Tensor:
        return self.sample(n, generator=generator, dtype=dtype)[0]
