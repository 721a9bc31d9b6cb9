"""Score few-step sampling: a metric at 1, 2, 4, 8, 16 flow-map steps, next to its noise floor.

Every network and step count starts from the same noise (common random numbers), so
differences between rows are differences between models, not between draws. The noise
floor is the metric of as many true samples: the best any model can score.
"""

from collections.abc import Mapping

import attrs
import gin
import torch

from flowmap_core.flow_map import FlowMap
from flowmap_core.protocols import Dataset, Metric
from flowmap_core.sampling import flow_map_sample


@gin.register("evaluate")
@attrs.frozen(kw_only=True)
class EvalSpec:
    """How runs are scored (gin `evaluate.<field>`): the metric, step counts, sample size."""

    metric: Metric = gin.REQUIRED
    step_counts: tuple[int, ...] = attrs.field(default=(1, 2, 4, 8, 16), converter=tuple)
    num_samples: int = 200_000
    chunk: int = 50_000
    plot_samples: int = 20_000
    seed: int = 1234

    def __attrs_post_init__(self) -> None:
        if self.metric is gin.REQUIRED:
            raise ValueError("evaluate.metric is required: bind it in the dataset's gin file")
        if not self.step_counts or min(self.step_counts) < 1:
            raise ValueError(f"evaluate.step_counts must be positive integers, got {self.step_counts}")


@attrs.frozen
class EvalResult:
    """Scores per network name and step count, the noise floor, and a few samples to plot."""

    metric: str
    step_counts: tuple[int, ...]
    scores: dict[str, dict[int, float]]
    noise_floor: float
    num_samples: int
    samples: dict[str, dict[int, torch.Tensor]]

    def table(self) -> str:
        """A Markdown table: one row per network, one column per step count, and the floor."""
        head = "| weights | " + " | ".join(f"{k} step{'s' if k > 1 else ''}" for k in self.step_counts) + " |"
        rule = "|---" * (len(self.step_counts) + 1) + "|"
        rows = [
            f"| {name} | " + " | ".join(f"{row[k]:.4f}" for k in self.step_counts) + " |"
            for name, row in self.scores.items()
        ]
        floor = (
            "| true samples (noise floor) | " + " | ".join(f"{self.noise_floor:.4f}" for _ in self.step_counts) + " |"
        )
        return "\n".join([head, rule, *rows, floor])


@torch.no_grad()
def evaluate(
    spec: EvalSpec,
    flow_maps: Mapping[str, FlowMap],
    dataset: Dataset,
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> EvalResult:
    """Sample `spec.num_samples` points with each flow map at each step count and score them."""
    generator = torch.Generator().manual_seed(spec.seed)
    truth = dataset.sample(spec.num_samples, generator=generator, device=torch.device("cpu"), dtype=torch.float64)
    noise_floor = spec.metric(truth.x1, dataset)
    shape = (spec.num_samples, *dataset.data_shape)
    x0 = torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
    scores: dict[str, dict[int, float]] = {}
    kept: dict[str, dict[int, torch.Tensor]] = {}
    for name, X in flow_maps.items():
        scores[name], kept[name] = {}, {}
        for steps in spec.step_counts:
            chunks = [flow_map_sample(X, x0_chunk, steps=steps).x.cpu() for x0_chunk in x0.split(spec.chunk)]
            samples = torch.cat(chunks)
            scores[name][steps] = spec.metric(samples, dataset)
            kept[name][steps] = samples[: spec.plot_samples]
    return EvalResult(
        metric=getattr(spec.metric, "name", type(spec.metric).__name__),
        step_counts=spec.step_counts,
        scores=scores,
        noise_floor=noise_floor,
        num_samples=spec.num_samples,
        samples=kept,
    )
