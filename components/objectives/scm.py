"""Continuous-time consistency (sCM: sCT and sCD), in TrigFlow's variables."""

import math

import attrs
import torch
from torch import Tensor

from flowmap_components.derivatives.forward_ad import ForwardAD
from flowmap_components.interpolants.trigonometric import Trigonometric
from flowmap_components.objectives.residual import mean_square
from flowmap_components.velocities.conditional import ConditionalVelocity
from flowmap_core import validators
from flowmap_core.flow_map import expand_time
from flowmap_core.protocols import (
    Derivative,
    FlowMapLike,
    Interpolant,
    ObjectiveInput,
    ObjectiveOutput,
    Teacher,
    VelocitySource,
)
from flowmap_core.registry import register


def implied_output(X: FlowMapLike, interpolant: Interpolant, x: Tensor, s: Tensor) -> Tensor:
    """F(x, s) = (beta(s) x - X_{s,1}(x)) / alpha(s): the TrigFlow output F of any map to the data end,
    inverting f = cos(t) x - sin(t) F (`parameterisation.trigflow` reads it off the backbone)."""
    c = interpolant.coefficients(s)
    return (expand_time(c.beta, x) * x - X(x, s, torch.ones_like(s))) / expand_time(c.alpha, x)


@register("objective", "scm")
@attrs.define(frozen=True, kw_only=True)
class ContinuousConsistency:
    """|F_theta(x_s, s) - F_theta-(x_s, s) - g / (|g| + c)|^2 / D: sCM's loss (Lu & Song 2024, Algorithm 1).

    The gradient of continuous-time consistency training moves the map to the data end,
    f(x_s, s) = X_{s,1}(x_s), along its Eulerian derivative d/ds f = d/ds X_{s,1}(x_s) +
    grad_x X_{s,1}(x_s) . v_s(x_s), the `velocity` source at x_s closing it: the pair's
    dx_s/ds (sCT, `velocity.conditional`) or a pretrained flow-matching velocity (sCD,
    `velocity.pretrained`). In TrigFlow's variables (Eq. 8-10 there), with t = pi (1 - s) / 2,
    cos t = beta(s), sin t = alpha(s) of `interpolant.trigonometric`, x_s its x_t / sigma_d,
    and F = (beta x - f) / alpha the TrigFlow output of the map (`implied_output`, for any
    single-time parameterisation; `parameterisation.trigflow` has it as its head):

        g = -cos^2 t (F- - dx_t/dt) - r cos t sin t (x_t + dF-/dt),

    g = cos t d f-/dt at r = 1, with dx_t/dt = -(2 / pi) dx_s/ds and dF-/dt = -(2 / pi) times
    the derivative of F- along (dx_s/ds, 1), from the teacher's V_{s,1} and its derivative
    along (dx_s/ds, 1) by the `derivative` strategy (forward-mode AD by default), without
    gradient (F- = F_theta- is the trainer's teacher: the online weights under
    stop-gradient, sCM's theta- = sg(theta)). Tangent warm-up: r = min(1, step /
    `warmup_steps`) (1 with 0 steps). Tangent normalisation: g / (|g| + c), |g| over all
    dimensions, c = `tangent_c` in x_s's units (sCM's c in x_t's units is c / sigma_d here:
    its 0.1 at sigma_d = 0.5 is 0.2); None leaves g as it is. The per-example loss is the
    mean square over the D dimensions; its value is |g / (|g| + c)|^2 / D, only its gradient,
    -2 g . grad F_theta / D, trains. sCM's adaptive weight e^w / D |.|^2 - w is the
    trainer's weighting (`weighting.learned`).
    """

    velocity: VelocitySource = attrs.field(factory=ConditionalVelocity)
    derivative: Derivative = attrs.field(factory=ForwardAD)
    tangent_c: float | None = attrs.field(default=0.1, validator=validators.optional(validators.positive))
    warmup_steps: int = attrs.field(default=10_000, validator=validators.non_negative_integer)

    @property
    def name(self) -> str:
        return "scm"

    def ramp(self, step: int) -> float:
        """r, the tangent warm-up's weight on the second term of g at a training step."""
        return 1.0 if self.warmup_steps == 0 else min(1.0, step / self.warmup_steps)

    def check_run(self, *, interpolant: Interpolant, teacher: Teacher) -> None:
        """TrigFlow's variables need the trigonometric interpolant."""
        if not isinstance(interpolant, Trigonometric):
            raise ValueError(
                "objective.scm is sCM's loss in TrigFlow's variables (cos t = beta(s), sin t = alpha(s)): it needs "
                f"train.interpolant = @interpolant.trigonometric(), got {type(interpolant).__name__}"
            )

    def __call__(self, inp: ObjectiveInput) -> ObjectiveOutput:
        s = inp.s
        point = inp.interpolant.interpolate(inp.x0, inp.x1, s)
        xs = point.xt
        ones = torch.ones_like(s)
        with torch.no_grad():
            dx_ds = self.velocity.at(inp, xs, s, point)
            V, dV_ds = self.derivative(inp.teacher, xs, s, ones, dx=dx_ds, ds=ones)
            c = inp.interpolant.coefficients(s)
            cos, sin = expand_time(c.beta, xs), expand_time(c.alpha, xs)
            gap = expand_time(1 - s, xs)
            dX_ds = dx_ds - V + gap * dV_ds  # d/ds X_{s,1}(x_s), X = x + (1 - s) V
            F_teacher = (cos * xs - (xs + gap * V)) / sin
            dF_ds = expand_time(c.beta_dot, xs) * xs + cos * dx_ds - dX_ds - expand_time(c.alpha_dot, xs) * F_teacher
            dF_ds = dF_ds / sin
            to_trigflow_time = -2 / math.pi
            g = -(cos**2) * (F_teacher - to_trigflow_time * dx_ds)
            g = g - self.ramp(inp.step) * cos * sin * (xs + to_trigflow_time * dF_ds)
            if self.tangent_c is not None:
                g = g / expand_time(g.flatten(1).norm(dim=1) + self.tangent_c, xs)
        F = implied_output(inp.student, inp.interpolant, xs, s)
        loss = mean_square(F - F_teacher - g)
        return ObjectiveOutput(per_example=loss, terms={self.name: loss.detach().mean()})
