"""The run report: `report.md`, `samples.png` (a panel per step count beside the true
density) and `kl_vs_steps.png`."""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from flowmap_core.evaluation import EvalResult, GuidedResult  # noqa: E402
from flowmap_core.protocols import DensityDataset  # noqa: E402
from flowmap_core.trainer import Trainer  # noqa: E402


def summary(trainer: Trainer) -> list[tuple[str, str]]:
    """(setting, value) rows describing a run's components and budget."""
    spec = trainer.spec

    def name(component: object) -> str:
        return getattr(component, "registry_name", None) or type(component).__name__

    optimizer = trainer.optimizer
    return [
        ("dataset", name(spec.dataset)),
        ("backbone", f"{name(spec.backbone)} ({sum(p.numel() for p in trainer.net.parameters()):,} parameters)"),
        ("parameterisation", name(spec.parameterisation)),
        ("interpolant", name(spec.interpolant)),
        ("objective", repr(spec.objective)),
        ("time sampler", repr(spec.time_sampler)),
        ("weighting", name(spec.weighting)),
        ("optimizer", f"{type(optimizer).__name__} lr {trainer.base_lrs[0]:g}, schedule {spec.lr_schedule!r}"),
        ("steps x batch", f"{spec.steps:,} x {spec.batch_size:,}"),
        ("EMA rates", ", ".join(f"{r:g}" for r in spec.ema_rates)),
        ("teacher", repr(spec.teacher)),
        ("gradient clip", str(spec.grad_clip)),
        ("processes", str(trainer.context.world_size)),
    ]


def write(
    run_dir: Path,
    trainer: Trainer,
    result: EvalResult,
    dataset: DensityDataset | None = None,
    guided: GuidedResult | None = None,
) -> Path:
    """Write report.md and the plots into `run_dir`; returns the report's path."""
    run_dir = Path(run_dir)
    lines = [
        f"# flowmap run: {run_dir.name}",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {k} | {v.replace('|', '/')} |" for k, v in summary(trainer)],
        "",
        f"Training time: {trainer.elapsed / 60:.1f} min for {trainer.step:,} steps "
        f"({trainer.step / max(trainer.elapsed, 1e-9):.1f} steps/s), {trainer.skipped} skipped.",
        "",
        f"## {result.metric} at each number of flow-map steps ({result.num_samples:,} samples)",
        "",
        result.table(),
        "",
        "![samples](samples.png)",
        "",
        f"![{result.metric} vs steps](kl_vs_steps.png)",
        "",
    ]
    if guided is not None:
        lines += [
            f"## Guided sampling: class-conditional {guided.metric} at each guidance scale",
            "",
            "Each class sampled at guidance w and scored against its own density, averaged over classes.",
            "",
            guided.table(),
            "",
            "![guided samples](guided.png)",
            "",
        ]
        plot_guided(run_dir / "guided.png", guided)
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    plot_samples(run_dir / "samples.png", result, dataset)
    plot_scores(run_dir / "kl_vs_steps.png", result)
    return path


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
            points = result.samples[name][steps].double().numpy()
            ax = axes[row][col]
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
    ax.set_xlabel("flow-map steps")
    ax.set_ylabel(result.metric)
    top = max(max(row.values()) for row in result.scores.values())
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
