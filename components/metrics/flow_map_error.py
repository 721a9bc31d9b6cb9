"""How well a learned map matches a known one, and a sample distance that works in any dimension.

- `flow_map_error_grid`: E|X_{s,t}(x_s) - X*_{s,t}(x_s)|^2 on every pair s < t of a time grid,
  x_s drawn from the interpolant at s (the points the map is trained on), plotted over the
  triangle by `plot_error_grid`.
- `sampling_error`: E|x^k - X*_{0,1}(x0)|^2 for a sampler's k-step output x^k from noise x0,
  against the exact transport of the same noise.
- `metric.sliced_wasserstein`: SW_2 between samples and as many fresh data samples. Its noise
  floor is its value on true samples at the same sample count (evaluation reports it).

The exact map X* is any `ExactFlow`, e.g. `exact.gaussian_mixture`.
"""

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs
import matplotlib
import numpy as np
import torch
from torch import Tensor

from flowmap_core.protocols import Dataset, ExactFlow, Interpolant, Sampler
from flowmap_core.registry import register
from flowmap_core.validators import integer, positive_integer

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MapFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def squared_distance(a: Tensor, b: Tensor) -> Tensor:
    """|a_i - b_i|^2 per row, summed over every data dimension, in float64: `(batch,)`."""
    return ((a.double() - b.double()) ** 2).flatten(1).sum(1)


@attrs.frozen
class ErrorGrid:
    """E|X_{s,t}(x_s) - X*_{s,t}(x_s)|^2 at `error[i, j]` for s = times[i] < t = times[j]
    (NaN elsewhere), with its Monte Carlo standard error, from `num_samples` points per pair."""

    times: tuple[float, ...]
    error: np.ndarray
    standard_error: np.ndarray
    num_samples: int

    def pairs(self) -> list[tuple[float, float, float, float]]:
        """(s, t, error, standard error) for every pair s < t."""
        n = len(self.times)
        return [
            (self.times[i], self.times[j], float(self.error[i, j]), float(self.standard_error[i, j]))
            for i in range(n)
            for j in range(i + 1, n)
        ]

    def mean(self) -> float:
        """The error averaged over the pairs of the grid."""
        return float(np.nanmean(self.error))

    def to_dict(self) -> dict:
        return {
            "times": list(self.times),
            "num_samples": self.num_samples,
            "pairs": [{"s": s, "t": t, "error": e, "standard_error": se} for s, t, e, se in self.pairs()],
            "mean": self.mean(),
        }


@torch.no_grad()
def flow_map_error_grid(
    X: MapFn,
    exact: ExactFlow,
    *,
    times: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
    num_samples: int = 1024,
    seed: int = 0,
    chunk: int = 8192,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> ErrorGrid:
    """E|X_{s,t}(x_s) - X*_{s,t}(x_s)|^2, x_s = alpha_s x0 + beta_s x1 (x0 ~ N(0, I), x1 ~ data,
    `exact.interpolant`), on every pair s < t of `times`. The same `num_samples` (x0, x1) are
    used for every pair; X* is solved for all pairs in one batch, X is called `chunk` rows
    at a time in `dtype` on `device`."""
    times = tuple(float(v) for v in times)
    if len(times) < 2 or any(b <= a for a, b in zip(times, times[1:], strict=False)):
        raise ValueError(f"flow_map_error_grid needs at least two increasing times, got {times}")
    generator = torch.Generator().manual_seed(seed)
    shape = (num_samples, *exact.data_shape)
    x0 = torch.randn(shape, generator=generator, dtype=torch.float64)
    x1 = exact.sample_data(num_samples, generator=generator, dtype=torch.float64)
    index = [(i, j) for i in range(len(times)) for j in range(i + 1, len(times))]
    s = torch.tensor([times[i] for i, _ in index], dtype=torch.float64).repeat_interleave(num_samples)
    t = torch.tensor([times[j] for _, j in index], dtype=torch.float64).repeat_interleave(num_samples)
    ones = [1] * len(exact.data_shape)
    x0_all, x1_all = x0.repeat(len(index), *ones), x1.repeat(len(index), *ones)
    xs = exact.interpolant.interpolate(x0_all, x1_all, s).xt
    truth = exact.flow_map(xs, s, t)
    learned = torch.cat(
        [
            X(xc.to(device=device, dtype=dtype), sc.to(device=device, dtype=dtype), tc.to(device=device, dtype=dtype))
            .detach()
            .cpu()
            for xc, sc, tc in zip(xs.split(chunk), s.split(chunk), t.split(chunk), strict=True)
        ]
    )
    per_row = squared_distance(learned, truth).reshape(len(index), num_samples)
    error = np.full((len(times), len(times)), np.nan)
    standard_error = np.full_like(error, np.nan)
    for (i, j), row in zip(index, per_row, strict=True):
        error[i, j] = row.mean().item()
        standard_error[i, j] = (row.std() / math.sqrt(num_samples)).item()
    return ErrorGrid(times=times, error=error, standard_error=standard_error, num_samples=num_samples)


def plot_error_grid(path: Path | str, grid: ErrorGrid, title: str = "") -> None:
    """A heat map of log10 E|X_{s,t} - X*_{s,t}|^2 over the triangle s < t (s across, t up)."""
    n = len(grid.times)
    fig, ax = plt.subplots(figsize=(4.4, 3.8))
    values = np.log10(np.where(grid.error > 0, grid.error, np.nan)).T  # rows t, columns s
    image = ax.imshow(values, origin="lower", cmap="viridis")
    labels = [f"{v:g}" for v in grid.times]
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("s")
    ax.set_ylabel("t")
    for i in range(n):
        for j in range(i + 1, n):
            ax.text(i, j, f"{grid.error[i, j]:.1e}", ha="center", va="center", fontsize=6, color="white")
    fig.colorbar(image, ax=ax, label="log10 E|X_{s,t} - X*_{s,t}|^2")
    ax.set_title(title or f"flow-map error ({grid.num_samples:,} points per pair)", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@torch.no_grad()
def sampling_error(
    X: MapFn,
    exact: ExactFlow,
    sampler: Sampler,
    *,
    step_counts: Sequence[int] = (1, 2, 4, 8, 16),
    num_samples: int = 4096,
    seed: int = 0,
    interpolant: Interpolant | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> dict[int, tuple[float, float]]:
    """k -> (E|x^k - X*_{0,1}(x0)|^2, its standard error): the k-step sampler's output x^k from
    noise x0 against the exact transport of the same x0, for each k in `step_counts`."""
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.randn((num_samples, *exact.data_shape), generator=generator, dtype=torch.float64)
    zeros = torch.zeros(num_samples, dtype=torch.float64)
    truth = exact.flow_map(x0, zeros, torch.ones_like(zeros))
    interpolant = exact.interpolant if interpolant is None else interpolant
    out = {}
    for k in step_counts:
        noise = torch.Generator(device=device).manual_seed(seed + k)
        samples = sampler(X, x0.to(device=device, dtype=dtype), k, interpolant=interpolant, generator=noise).x
        per_row = squared_distance(samples.cpu(), truth)
        out[k] = (per_row.mean().item(), (per_row.std() / math.sqrt(num_samples)).item())
    return out


def sliced_wasserstein(a: Tensor, b: Tensor, *, projections: int = 256, seed: int = 0) -> float:
    """SW_2(a, b) = sqrt(E_theta W_2^2(theta . a, theta . b)), theta uniform on the unit sphere,
    over `projections` directions fixed by `seed`; each 1D W_2^2 is the mean squared gap of
    the sorted projections (equal sample counts). For N(0, I) against N(m, I) in d
    dimensions, SW_2 = |m| / sqrt(d). Non-finite samples give inf."""
    a, b = a.detach().double().flatten(1).cpu(), b.detach().double().flatten(1).cpu()
    if a.shape != b.shape:
        raise ValueError(
            f"sliced_wasserstein needs two sample sets of one shape, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return math.inf
    generator = torch.Generator().manual_seed(seed)
    theta = torch.randn((a.shape[1], projections), generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    pa, pb = (np.sort((x @ theta).T.numpy(), axis=1) for x in (a, b))  # numpy sorts rows twice as fast
    return float(np.sqrt(((pa - pb) ** 2).mean()))


@register("metric", "sliced_wasserstein")
@attrs.define(frozen=True, kw_only=True)
class SlicedWasserstein:
    """SW_2 between the samples and as many fresh data samples (drawn with `seed`), over
    `projections` random directions: sqrt(E_theta W_2^2(theta . x, theta . y)). Works in any
    dimension and for images (flattened). Even true samples score above 0 at a finite count:
    the evaluation's noise floor row is that value."""

    projections: int = attrs.field(default=256, validator=positive_integer)
    seed: int = attrs.field(default=4321, validator=integer)
    name: str = attrs.field(default="sliced W2", init=False)

    def __call__(self, samples: Tensor, dataset: Dataset) -> float:
        generator = torch.Generator().manual_seed(self.seed)
        reference = dataset.sample(len(samples), generator=generator, device=torch.device("cpu"), dtype=torch.float64)
        return sliced_wasserstein(samples, reference.x1, projections=self.projections, seed=self.seed)
