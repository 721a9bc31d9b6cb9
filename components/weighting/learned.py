"""A learned log-variance weighting w(s, t), as in EDM2 and the official flow-map code."""

from collections.abc import Callable

import torch
from torch import Tensor, nn

from flowmap_components.backbones.time_features import FourierTimeFeatures
from flowmap_core.registry import register
from flowmap_core.typing import Scalar, Times, typechecked
from flowmap_core.validators import arguments, in_range, non_negative_integer, positive


def _one_process(value: Tensor) -> Tensor:
    """The sum over ranks when there is one process."""
    return value


@register("weighting", "learned")
@arguments(
    octaves=non_negative_integer,
    bound=positive,
    scale_rate=in_range(0.0, 1.0, high_open=True),
    min_scale=positive,
    slack=positive,
)
class LearnedLogVariance(nn.Module):
    """mean_i exp(-w(s_i, t_i)) l_i / c + w(s_i, t_i), w = B tanh(u(s, t) / B).

    Uncertainty weighting (Kendall et al. 2018, as in EDM2, Karras et al. 2024:
    L = E[l / exp(u) + u]):
    minimising over w sets exp(w(s, t)) to the expected loss at (s, t), so every pair of
    times contributes on one scale. u is linear in Fourier features of (s, t) and starts
    at 0, i.e. the uniform mean. Its parameters train with the backbone's.

    Two guards keep it from running away, both in EDM2's spirit:

    - **Normalisation.** EDM2's preconditioning makes E[l] ~ 1, so its log-variance lives
      near 0. Here c is a running mean of the batch's mean loss (rate `scale_rate`,
      detached, floored at `min_scale`), so l / c has mean ~ 1 on any dataset and w
      measures a pair's loss *relative* to the average. Under data parallelism the
      running means are of the whole batch, every rank's rows summed
      (`share_across_ranks`), so all ranks keep the same c.
    - **Bound.** A residual with no floor (self-distillation rows are exactly 0 at
      initialisation, when the output layer is zero) drives the optimal w to -inf, and
      exp(-w) then lets those rows drown out the rest. EDM2 bounds its log-variance
      implicitly (a unit-norm projection of bounded cosine features, no bias); here the
      bound is explicit, |w| < B = `bound`, so no pair of times weighs more than e^(2B)
      times another. B = 0.5 by default: on LSD's checkerboard (the online teacher), B = 2
      diverged within 500 steps (the self-distillation rows, 15x up-weighted against
      flow matching, feed their own targets) and after 3000 steps B = 1 scored KL
      0.593 / 0.380 at 1 / 4 steps against B = 0.5's 0.478 / 0.283 (docs/methods.md).
    - **No drift past recovery.** Where the optimum lies beyond the bound (a row with no
      floor wants w -> -inf), tanh saturates, its gradient vanishes, and Adam, which
      normalises gradients, keeps moving u outward by about the learning rate every step;
      coming back when the optimum returns took as many steps as the drift. So u pays
      (|u| - `slack` B)^2 beyond slack B (a restoring force that outweighs the vanishing
      tanh gradient at once) and stays within reach: at slack = 2, w = 0.96 B there.

    With `per_term`, w equalises pairs of times within each term (the diagonal rows,
    s = t, and the others) but keeps the terms' balance as the uniform mean has it:
    mean_i exp(-w_i) l_i / c + (c_g(i) / c) w_i, c_g the running mean loss of row i's
    term, so exp(w) tends to l(s, t) / c_g and each term's total weight stays ~1. Across
    terms the plain form compares flow matching's irreducible loss with a
    self-distillation residual that has no floor, and up-weights the latter.
    """

    def __init__(
        self,
        *,
        octaves: int = 8,
        bound: float = 0.5,
        scale_rate: float = 0.99,
        min_scale: float = 1e-8,
        per_term: bool = False,
        slack: float = 2.0,
    ):
        super().__init__()
        self.bound = bound
        self.scale_rate = scale_rate
        self.min_scale = min_scale
        self.per_term = per_term
        self.slack = slack
        self._sum_over_ranks: Callable[[Tensor], Tensor] = _one_process
        self.features = FourierTimeFeatures(octaves)
        self.linear = nn.Linear(2 * self.features.dim, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        # Running means of the batch mean loss: overall, and (`per_term`) on the diagonal
        # (s = t) and off-diagonal rows; 0 until the first batch that has such rows.
        self.register_buffer("scale", torch.zeros(()))
        if per_term:
            self.register_buffer("term_scales", torch.zeros(2))

    def pre_activation(self, s: Tensor, t: Tensor) -> Tensor:
        """u(s, t), one value per example: linear in Fourier features of (s, t)."""
        features = torch.cat([self.features(s), self.features(t)], dim=-1)
        return self.linear(features.to(self.linear.weight.dtype)).squeeze(-1).to(s.dtype)

    def log_variance(self, s: Tensor, t: Tensor) -> Tensor:
        """w(s, t), one value per example, in (-bound, bound)."""
        return self.bound * torch.tanh(self.pre_activation(s, t) / self.bound)

    def restoring(self, u: Tensor) -> Tensor:
        """(|u| - slack B)^2 beyond slack B, 0 within: keeps u where tanh still has a gradient."""
        return torch.relu(u.abs() - self.slack * self.bound).pow(2)

    @staticmethod
    @torch.no_grad()
    def _running(old: Tensor, batch: Tensor, rate: float) -> Tensor:
        """One step of a running mean (the batch itself at first); a non-finite or empty
        batch (a step the trainer skips; no rows of a term) leaves it as it was."""
        updated = torch.where(old > 0, rate * old + (1 - rate) * batch, batch)
        return torch.where(torch.isfinite(batch), updated, old)

    def share_across_ranks(self, sum_over_ranks: Callable[[Tensor], Tensor]) -> None:
        """Keep the running means of the whole batch under data parallelism (the trainer
        calls this; see `flowmap_core.protocols.SharesBatchStatistics`)."""
        self._sum_over_ranks = sum_over_ranks

    @torch.no_grad()
    def _update_scales(self, per_example: Tensor, diagonal: Tensor) -> None:
        loss = per_example.detach().to(self.scale.dtype)
        rows = torch.stack([torch.ones_like(diagonal), diagonal, ~diagonal]).to(loss.dtype)
        # Loss sums and row counts of the whole batch, the other ranks' parts included.
        sums = self._sum_over_ranks(torch.cat([rows @ loss, rows.sum(dim=1)]))
        means = sums[:3] / sums[3:]  # NaN (0 / 0) for a term with no rows
        self.scale.copy_(self._running(self.scale, means[0], self.scale_rate))
        if self.per_term:
            self.term_scales.copy_(self._running(self.term_scales, means[1:], self.scale_rate))

    @typechecked
    def forward(self, per_example: Times, s: Times, t: Times) -> Scalar:
        diagonal = s == t
        self._update_scales(per_example, diagonal)
        scale = self.scale.clamp_min(self.min_scale).to(per_example.dtype)
        u = self.pre_activation(s, t)
        w = self.bound * torch.tanh(u / self.bound)
        if not self.per_term:
            return (torch.exp(-w) * per_example / scale + w + self.restoring(u)).mean()
        term = self.term_scales.clamp_min(self.min_scale).to(per_example.dtype)
        own = torch.where(diagonal, term[0], term[1])
        return (torch.exp(-w) * per_example / scale + own / scale * w + self.restoring(u)).mean()
