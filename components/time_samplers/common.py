"""Pieces shared by the time samplers: the diagonal share, the annealed gap, assembly."""

import torch
from torch import Tensor

from flowmap_core.protocols import TimeSample


def max_gap(step: int, *, initial: float, final: float, anneal_steps: int) -> float:
    """Largest allowed gap t - s at a training step: linear from `initial` to `final` over
    `anneal_steps` steps (0: `final` from the start), the seed's widening away from the
    diagonal."""
    if anneal_steps == 0 or step >= anneal_steps:
        return final
    return initial + (final - initial) * step / anneal_steps


def diagonal_count(n: int, fraction: float) -> int:
    """How many of `n` rows lie on the diagonal."""
    return int(round(n * fraction))


def uniform(n: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    return torch.rand(n, generator=generator, device=generator.device, dtype=dtype)


def assemble(diagonal_t: Tensor, s: Tensor, t: Tensor, device: torch.device) -> TimeSample:
    """Diagonal rows first (s = t), then the off-diagonal pairs."""
    return TimeSample(
        s=torch.cat([diagonal_t, s]).to(device),
        t=torch.cat([diagonal_t, t]).to(device),
        n_diagonal=diagonal_t.shape[0],
    )


def place_gaps(gap: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Pairs (s, s + gap) with s uniform on [0, 1 - gap]."""
    s = uniform(gap.shape[0], generator, gap.dtype) * (1 - gap)
    return s, s + gap
