"""The figures of a run and of a sweep.

A run on 2D data gets `samples.png` (a panel per step count beside the true density) and
`kl_vs_steps.png`; a run on images gets `samples_nfe<k>.png` per step count (a grid of samples of
the headline weights from the flow map and each baseline sampler at that NFE, from the same
noise) and `scores.png` (the metric against NFE). Class-conditional runs scored at guidance
scales add `guided.png` (2D) or `guided_w<w>.png` per scale (images). A sweep gets
`summary.png`: each cell's headline scores against step count, mean ± std over seeds.
"""

import math
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from flowmap_core.evaluation import EvalResult, GuidedResult  # noqa: E402
from flowmap_core.protocols import DensityDataset  # noqa: E402
from flowmap_core.sweep import Summary, mean_std  # noqa: E402


def write_run_figures(
    run_dir: Path, result: EvalResult, dataset: DensityDataset | None, guided: GuidedResult | None, images: bool
) -> tuple[list[str], list[str]]:
    """Write a run's figures into `run_dir`; returns the file names of the score figures and of
    the guided ones, in report order."""
    if images:
        figures = write_image_figures(run_dir, result)
    else:
        plot_samples(run_dir / "samples.png", result, dataset)
        plot_scores(run_dir / "kl_vs_steps.png", result)
        figures = ["samples.png", "kl_vs_steps.png"]
    if guided is None:
        return figures, []
    if guided.pooled:
        return figures, write_guided_grids(run_dir, guided)
    plot_guided(run_dir / "guided.png", guided)
    return figures, ["guided.png"]


def tile(images: torch.Tensor, columns: int = 8) -> np.ndarray:
    """Images `(n, C, H, W)` in [-1, 1] as one `(rows * (H + 1), columns * (W + 1), C)` array in
    [0, 1], a one-pixel gap between them (C = 1 or 3)."""
    n, c, h, w = images.shape
    rows = math.ceil(n / columns)
    pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    canvas = np.ones((rows * (h + 1) - 1, columns * (w + 1) - 1, c), dtype=np.float32)
    for index in range(n):
        row, col = divmod(index, columns)
        canvas[row * (h + 1) : row * (h + 1) + h, col * (w + 1) : col * (w + 1) + w] = pixels[index]
    return canvas


def show(ax, canvas: np.ndarray) -> None:
    """One tiled canvas on `ax`, gray for one channel."""
    ax.imshow(canvas[..., 0] if canvas.shape[2] == 1 else canvas, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def write_image_figures(run_dir: Path, result: EvalResult, columns: int = 8) -> list[str]:
    """A grid PNG per step count (one panel per sampler row of the first weights) and the
    score plot; returns the file names, in report order."""
    first = next(iter(result.scores))
    rows = [first] + [name for name in result.baselines if name.startswith(f"{first}, ")]
    names = []
    for nfe in result.step_counts:
        panels = [row for row in rows if nfe in result.samples[row]]
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
        for ax, row in zip(axes[0], panels, strict=True):
            show(ax, tile(result.samples[row][nfe][: columns * columns], columns))
            sampler = result.sampler if row == first else row.removeprefix(f"{first}, ")
            ax.set_title(f"{sampler}, NFE {nfe}: {result.scores[row][nfe]:.2f}", fontsize=9)
        fig.tight_layout()
        names.append(f"samples_nfe{nfe}.png")
        fig.savefig(run_dir / names[-1], dpi=110)
        plt.close(fig)
    plot_scores(run_dir / "scores.png", result)
    return [*names, "scores.png"]


def write_guided_grids(run_dir: Path, guided: GuidedResult, columns: int = 8) -> list[str]:
    """`guided_w<w>.png` per guidance scale: a panel per step count, one row of samples per
    class; returns the file names."""
    names = []
    for w in guided.scales:
        counts = guided.step_counts
        fig, axes = plt.subplots(1, len(counts), figsize=(2.6 * len(counts), 3.4), squeeze=False)
        for ax, steps in zip(axes[0], counts, strict=True):
            images, labels = guided.samples[w][steps]
            per_class = min(columns, int((labels == labels[0]).sum()))
            rows = [images[labels == c][:per_class] for c in labels.unique(sorted=True)]
            show(ax, tile(torch.cat(rows), per_class))
            score = guided.scores[w][steps]
            ax.set_title(f"w = {w:g}, {steps} step{'s' if steps > 1 else ''}: {score:.2f}", fontsize=8)
        fig.tight_layout()
        names.append(f"guided_w{w:g}.png")
        fig.savefig(run_dir / names[-1], dpi=110)
        plt.close(fig)
    return names


def plot_samples(path: Path, result: EvalResult, dataset: DensityDataset | None) -> None:
    """One row per network: the true density, then a 2D histogram per step count."""
    names = list(result.samples)
    columns = len(result.step_counts) + 1
    fig, axes = plt.subplots(len(names), columns, figsize=(2.6 * columns, 2.7 * len(names)), squeeze=False)
    extent = (-4.5, 4.5, -4.5, 4.5)
    edges = torch.linspace(extent[0], extent[1], 151, dtype=torch.float64)
    truth = dataset.bin_probabilities(edges, edges) if isinstance(dataset, DensityDataset) else None
    for row, name in enumerate(names):
        ax = axes[row][0]
        if truth is not None:
            ax.imshow(truth.T.numpy(), origin="lower", extent=extent, cmap="magma")
        ax.set_title("true density" if row == 0 else "")
        ax.set_ylabel(name)
        for col, steps in enumerate(result.step_counts, start=1):
            ax = axes[row][col]
            if steps not in result.samples[name]:  # a sampler that cannot take this NFE (Heun at 1)
                ax.set_title(f"NFE {steps}: —")
                ax.axis("off")
                continue
            points = result.samples[name][steps].double().numpy()
            ax.hist2d(points[:, 0], points[:, 1], bins=[edges.numpy(), edges.numpy()], cmap="magma")
            ax.set_title(f"{steps} step{'s' if steps > 1 else ''}: {result.scores[name][steps]:.3f}")
    _save_panels(fig, axes, path)


def _save_panels(fig: plt.Figure, axes, path: Path) -> None:
    """Square panels without ticks, written to `path`."""
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scores(path: Path, result: EvalResult) -> None:
    """The metric against the number of steps (log scale), with the noise floor."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, row in result.scores.items():
        ax.plot(result.step_counts, [row[k] for k in result.step_counts], marker="o", label=name)
    ax.axhline(result.noise_floor, color="gray", linestyle="--", label="true samples (noise floor)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(result.step_counts, [str(k) for k in result.step_counts])
    ax.set_xlabel("network evaluations (NFE)" if result.baselines else "flow-map steps")
    ax.set_ylabel(result.metric)
    finite = [v for row in result.scores.values() for v in row.values() if math.isfinite(v)]
    top = max(finite, default=math.nan)
    if math.isfinite(top):
        ax.set_ylim(0, top * 1.1)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_guided(path: Path, guided: GuidedResult) -> None:
    """One row per guidance scale, one column per step count; points coloured by class."""
    rows, columns = len(guided.scales), len(guided.step_counts)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.7 * rows), squeeze=False)
    for i, w in enumerate(guided.scales):
        for j, steps in enumerate(guided.step_counts):
            points, labels = guided.samples[w][steps]
            ax = axes[i][j]
            ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=1, vmin=0, vmax=9)
            ax.set_xlim(-4.5, 4.5)
            ax.set_ylim(-4.5, 4.5)
            score = guided.scores[w][steps]
            ax.set_title(f"w = {w:g}, {steps} step{'s' if steps > 1 else ''}: {score:.3f}", fontsize=8)
    _save_panels(fig, axes, path)


def plot_sweep(summary: Summary, path: Path) -> list[str]:
    """Each cell's headline scores and its ODE baselines against NFE, mean ± 1 std over seeds,
    each cell labelled with its mean training time; a point for each pair '<name> NFE',
    '<name> score' of a tool's scores (tools/adaptive_ode.py's adaptive solver); the noise floor
    dashed; a log score axis when every score is positive. Returns the labels."""
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = []

    def draw(series, label: str) -> None:
        x = sorted(series.values)
        stats = [series.stats(k) for k in x]
        errors = [0 if math.isnan(s) else s for _, s, _ in stats]
        ax.errorbar(x, [m for m, _, _ in stats], yerr=errors, marker="o", label=label)
        labels.append(label)

    for cell in summary.cells:
        headline = summary.headline(cell)
        if headline is not None:
            (_, _, timed), (seconds, _, _) = summary.budget(cell)
            draw(headline, cell + (f" ({seconds / 60:.1f} min training)" if timed else ""))
            floor, _, _ = summary.noise_floor(cell)
            ax.plot(
                sorted(headline.values), [floor] * len(headline.values), linestyle="--", color="gray", linewidth=0.8
            )
        for series in summary.baselines(cell):
            draw(series, series.label)
        scores = summary.tool_scores(cell)
        for name in [key.removesuffix(" NFE") for key in scores if key.endswith(" NFE")]:
            if f"{name} score" not in scores:
                continue
            nfe, _, _ = mean_std(scores[f"{name} NFE"])
            value, width, _ = mean_std(scores[f"{name} score"])
            label = f"{cell}, {name}"
            ax.errorbar([nfe], [value], yerr=[0 if math.isnan(width) else width], marker="s", label=label)
            labels.append(label)
    if labels:
        ax.set_xscale("log", base=2)
        if not any(y <= 0 for line in ax.get_lines() for y in line.get_ydata()):
            ax.set_yscale("log")
        ax.set_xlabel("flow-map steps (or NFE)")
        ax.set_ylabel("score (dashed: noise floor)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return labels
