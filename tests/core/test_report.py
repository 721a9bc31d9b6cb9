"""The run report's figures for 2D data, and what the guided table scores."""

import math

import pytest
import torch

from flowmap_components.datasets.checkerboard import Checkerboard
from flowmap_core import figures, registry, report
from flowmap_core.evaluation import ClassOf, EvalResult, EvalSpec, evaluate_guided
from flowmap_core.sampling import Samples


def test_2d_figures_leave_a_blank_panel_where_a_baseline_cannot_take_the_nfe(tmp_path):
    """Heun takes 2 evaluations per step, so it has no NFE 1 sample: its panel is left blank
    instead of the plot failing."""
    points = torch.randn(500, 2)
    result = EvalResult(
        metric="kl",
        step_counts=(1, 2),
        scores={"ema_0.999": {1: 0.5, 2: 0.3}, "ema_0.999, heun ODE": {1: math.nan, 2: 0.4}},
        noise_floor=0.04,
        num_samples=500,
        samples={"ema_0.999": {1: points, 2: points}, "ema_0.999, heun ODE": {2: points}},
        baselines=("ema_0.999, heun ODE",),
    )
    figures.plot_samples(tmp_path / "samples.png", result, Checkerboard())
    figures.plot_scores(tmp_path / "kl_vs_steps.png", result)
    assert (tmp_path / "samples.png").stat().st_size > 1000
    assert (tmp_path / "kl_vs_steps.png").stat().st_size > 1000


class WholeDensity:
    """A sampler that ignores the map and returns true samples of the whole dataset: what a
    guided map at w = 0 (b^0 = b(x, null)) should produce for every class."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __call__(self, X, x0, steps, *, interpolant, generator):
        batch = self.dataset.sample(len(x0), generator=torch.Generator().manual_seed(7), device="cpu", dtype=x0.dtype)
        return Samples(x=batch.x1, nfe=steps)


class AnyMap:
    def with_cond(self, **cond):
        return self


def test_guided_scores_w0_against_the_whole_density_and_w1_against_each_class():
    """At w = 0 the guided velocity is b(x, null), so every class's samples are scored against
    the whole density; at w = 1 against their own class."""
    dataset = registry.build("dataset", "gaussian_mixture")
    metric = registry.build("metric", "histogram_kl")
    spec = EvalSpec(
        metric=metric,
        sampler=WholeDensity(dataset),
        step_counts=(1,),
        guidance_scales=(0.0, 1.0),
        guidance_samples=8000,
    )
    conditioning = registry.build("conditioning", "guided")
    result = evaluate_guided(
        spec, AnyMap(), conditioning, dataset, interpolant=None, device=torch.device("cpu"), dtype=torch.float64
    )
    samples = WholeDensity(dataset)(
        None, torch.zeros(1000, 2, dtype=torch.float64), 1, interpolant=None, generator=None
    ).x
    classes = dataset.num_classes
    assert result.scores[0.0][1] == pytest.approx(metric(samples, dataset))
    per_class = [metric(samples, ClassOf(dataset, c)) for c in range(classes)]
    assert result.scores[1.0][1] == pytest.approx(sum(per_class) / classes)
    assert result.scores[1.0][1] > result.scores[0.0][1] + 1.5  # whole-ring samples miss a class by about log 8
    # w = 0's floor: other true samples of the whole density, as many as a class gets
    assert result.edge_floor != result.scores[0.0][1]
    assert result.edge_floor == pytest.approx(result.scores[0.0][1], rel=0.25)
    assert "floor of w = 0" in report.score_table(result.to_table())
