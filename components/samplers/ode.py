"""Integrate the map's diagonal velocity b_t = v_{t,t} with a fixed-step ODE solver."""

import attrs
import torch
from torch import Tensor

from flowmap_core.protocols import FlowMapLike, Interpolant
from flowmap_core.registry import register
from flowmap_core.sampling import SOLVERS, Samples, ode_sample


def _solver(instance: "ODESampler", attribute: attrs.Attribute, value: str) -> None:
    if value not in SOLVERS:
        raise ValueError(f"sampler.ode.solver must be one of {', '.join(SOLVERS)}, got {value!r}")


@register("sampler", "ode")
@attrs.define(frozen=True, kw_only=True)
class ODESampler:
    """`steps` steps of Euler, Heun or RK4 on dx/dt = v_{t,t}(x): how flow matching samples."""

    solver: str = attrs.field(default="euler", validator=_solver)

    @property
    def nfe_per_step(self) -> int:
        """Network evaluations per step: 1 (Euler), 2 (Heun), 4 (RK4)."""
        return SOLVERS[self.solver][1]

    @property
    def label(self) -> str:
        return f"{self.solver} ODE"

    def __call__(
        self, X: FlowMapLike, x0: Tensor, steps: int, *, interpolant: Interpolant, generator: torch.Generator
    ) -> Samples:
        return ode_sample(X.velocity, x0, solver=self.solver, steps=steps)
