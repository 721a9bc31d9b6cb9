"""Backward maps: data to noise by jumps of X_{s,t} with s > t, and the round trip back.

The flow map is defined on the whole square (paper, Sec. 2): X_{1,0} carries data to noise,
and X_{0,1}(X_{1,0}(x)) = x for the exact map. Along k uniform jumps each way,

    noise round trip  |X_{1,0}(X_{0,1}(x0)) - x0|,     data round trip  |X_{0,1}(X_{1,0}(x1)) - x1|,

each the root mean square over coordinates and samples. Where the data has a known map X*
(`dataset.gaussian_mixture_nd`), the encoding itself is scored against it:
|X_{1,0}(x1) - X*_{1,0}(x1)| by k jumps, the same root mean square. A map trained on the
triangle s < t only has never seen s > t; `time_sampler.full_square` trains both directions.
"""

from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import Tensor

from flowmap_core.protocols import ExactFlow

Map = Callable[[Tensor, Tensor, Tensor], Tensor]


def jumps(X: Map, x: Tensor, start: float, end: float, steps: int) -> Tensor:
    """`steps` uniform jumps of X from time `start` to `end` (either direction)."""
    grid = torch.linspace(start, end, steps + 1, dtype=x.dtype, device=x.device)
    for s, t in zip(grid[:-1], grid[1:], strict=True):
        x = X(x, s.expand(x.shape[0]), t.expand(x.shape[0]))
    return x


def encode(X: Map, x1: Tensor, steps: int) -> Tensor:
    """Data to noise: `steps` jumps from t = 1 to t = 0."""
    return jumps(X, x1, 1.0, 0.0, steps)


def exact_map(spec: Any) -> ExactFlow | None:
    """The exact map of a run's data under the run's interpolant, where its data set carries one
    (`dataset.gaussian_mixture_nd`'s `mixture`); None otherwise."""
    mixture = getattr(spec.dataset, "mixture", None)
    return None if mixture is None else attrs.evolve(mixture, interpolant=spec.interpolant)


def rms(a: Tensor, b: Tensor) -> float:
    """Root mean square of a - b over every coordinate and sample."""
    return float(((a - b).double() ** 2).mean().sqrt())


@torch.no_grad()
def round_trips(X: Map, x0: Tensor, x1: Tensor, steps: int) -> dict[str, float]:
    """The noise and data round-trip errors of X with `steps` jumps each way."""
    return {
        "noise": rms(jumps(X, jumps(X, x0, 0.0, 1.0, steps), 1.0, 0.0, steps), x0),
        "data": rms(jumps(X, encode(X, x1, steps), 0.0, 1.0, steps), x1),
    }


def encoding_error(encoded: Tensor, exact: ExactFlow, x1: Tensor) -> float:
    """|X_{1,0}(x1) - X*_{1,0}(x1)|: the points `encode` carried x1 to, against the exact map's
    one jump, in float64."""
    exact_x1 = x1.detach().to(device="cpu", dtype=torch.float64)
    ones = torch.ones(len(exact_x1), dtype=torch.float64)
    return rms(encoded.cpu(), exact.flow_map(exact_x1, ones, torch.zeros_like(ones)))
