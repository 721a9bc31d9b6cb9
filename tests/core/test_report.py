"""The run report's figures for 2D data."""

import math

import torch

from components.datasets.checkerboard import Checkerboard
from flowmap_core import report
from flowmap_core.evaluation import EvalResult


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
    report.plot_samples(tmp_path / "samples.png", result, Checkerboard())
    report.plot_scores(tmp_path / "kl_vs_steps.png", result)
    assert (tmp_path / "samples.png").stat().st_size > 1000
    assert (tmp_path / "kl_vs_steps.png").stat().st_size > 1000
