"""Sampling: k jumps of the flow map, or an ODE solve of its diagonal velocity b_t = v_{t,t}.

Both start from Gaussian noise x0 at t = 0 and end at t = 1 (data), and report the
number of network evaluations (NFE) they spent.
"""

from collections.abc import Callable

import attrs
import torch
from torch import Tensor

from flowmap_core.flow_map import FlowMap, batch_times

Velocity = Callable[[Tensor, Tensor], Tensor]


@attrs.frozen
class Samples:
    """Generated points and the number of network evaluations (per point) they cost."""

    x: Tensor
    nfe: int


def uniform_grid(steps: int, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """Times 0 = t_0 < t_1 < ... < t_steps = 1, equally spaced."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.linspace(0.0, 1.0, steps + 1, device=device, dtype=dtype)


def _check_grid(grid: Tensor) -> None:
    if grid.dim() != 1 or grid.numel() < 2:
        raise ValueError(f"a time grid is a 1D tensor of at least two times, got shape {tuple(grid.shape)}")


@torch.no_grad()
def flow_map_sample(X: FlowMap, x0: Tensor, steps: int | None = None, grid: Tensor | None = None) -> Samples:
    """x_{k+1} = X_{t_k, t_{k+1}}(x_k) along `grid` (default: `steps` uniform jumps from 0 to 1).

    One network evaluation per jump (more if the parameterisation needs several).
    """
    if (steps is None) == (grid is None):
        raise ValueError("give exactly one of `steps` and `grid`")
    grid = uniform_grid(steps, device=x0.device, dtype=x0.dtype) if grid is None else grid.to(x0)
    _check_grid(grid)
    x = x0
    for s, t in zip(grid[:-1], grid[1:], strict=True):
        x = X(x, batch_times(s, x), batch_times(t, x))
    return Samples(x=x, nfe=grid.numel() - 1)


def _euler(b: Velocity, x: Tensor, t0: Tensor, t1: Tensor) -> Tensor:
    return x + (t1 - t0) * b(x, t0)


def _heun(b: Velocity, x: Tensor, t0: Tensor, t1: Tensor) -> Tensor:
    h = t1 - t0
    k1 = b(x, t0)
    k2 = b(x + h * k1, t1)
    return x + h / 2 * (k1 + k2)


def _rk4(b: Velocity, x: Tensor, t0: Tensor, t1: Tensor) -> Tensor:
    h = t1 - t0
    k1 = b(x, t0)
    k2 = b(x + h / 2 * k1, t0 + h / 2)
    k3 = b(x + h / 2 * k2, t0 + h / 2)
    k4 = b(x + h * k3, t1)
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


SOLVERS: dict[str, tuple[Callable[[Velocity, Tensor, Tensor, Tensor], Tensor], int]] = {
    "euler": (_euler, 1),
    "heun": (_heun, 2),
    "rk4": (_rk4, 4),
}
"""Fixed-step solvers: name -> (step function, velocity evaluations per step)."""


@torch.no_grad()
def ode_sample(
    velocity: Velocity,
    x0: Tensor,
    *,
    solver: str = "euler",
    steps: int | None = None,
    grid: Tensor | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> Samples:
    """Integrate dx/dt = velocity(x, t) from 0 to 1.

    `solver` is one of `euler`, `heun`, `rk4` (fixed steps on `grid`, or `steps`
    uniform ones) or `dopri5` (adaptive Dormand-Prince from torchdiffeq, tolerances
    `rtol`, `atol`; its NFE is counted as it runs).
    """
    if solver == "dopri5":
        return _adaptive(velocity, x0, rtol=rtol, atol=atol)
    if solver not in SOLVERS:
        raise ValueError(f"unknown ODE solver {solver!r}; known solvers: {', '.join([*SOLVERS, 'dopri5'])}")
    if (steps is None) == (grid is None):
        raise ValueError("give exactly one of `steps` and `grid`")
    grid = uniform_grid(steps, device=x0.device, dtype=x0.dtype) if grid is None else grid.to(x0)
    _check_grid(grid)
    step, cost = SOLVERS[solver]

    def b(x: Tensor, t: Tensor) -> Tensor:
        return velocity(x, batch_times(t, x))

    x = x0
    for t0, t1 in zip(grid[:-1], grid[1:], strict=True):
        x = step(b, x, t0, t1)
    return Samples(x=x, nfe=cost * (grid.numel() - 1))


def _adaptive(velocity: Velocity, x0: Tensor, *, rtol: float, atol: float) -> Samples:
    from torchdiffeq import odeint

    calls = 0

    def b(t: Tensor, x: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        return velocity(x, batch_times(t, x))

    times = torch.tensor([0.0, 1.0], device=x0.device, dtype=x0.dtype)
    path = odeint(b, x0, times, method="dopri5", rtol=rtol, atol=atol)
    return Samples(x=path[-1], nfe=calls)
