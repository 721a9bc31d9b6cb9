"""tools/mixture_experiment.py: the error figure runs along the axis the sweep varies."""

import importlib.util
from pathlib import Path

import pytest

from flowmap_core.scores import Scores
from flowmap_core.sweep import Summary

TOOL = Path(__file__).resolve().parents[2] / "tools" / "mixture_experiment.py"
_spec = importlib.util.spec_from_file_location("mixture_experiment", TOOL)
mixture_experiment = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mixture_experiment)


def _summary(cells):
    """A sweep's summary: two seeds of tool scores per cell."""
    seeds = {
        0: {"map error (grid mean)": 0.1, "flow map NFE 1 error": 0.3},
        1: {"map error (grid mean)": 0.2, "flow map NFE 1 error": 0.4},
    }
    return Summary({cell: {seed: Scores(tool=tool) for seed, tool in seeds.items()} for cell in cells})


@pytest.mark.parametrize(
    ("dimensions", "separations", "figure"),
    [
        ([2, 8, 32], [4.0], "error_vs_dimension.png"),
        ([8], [2.0, 4.0, 6.0], "error_vs_separation.png"),
        ([2, 8], [2.0, 4.0], "error_vs_dimension.png"),
        ([8], [4.0], "error_vs_dimension.png"),
    ],
)
def test_the_figure_runs_along_the_swept_axis(tmp_path, dimensions, separations, figure):
    cells = {f"mixture_lsd-dimension={d}-separation={s}": ("lsd", d, s) for d in dimensions for s in separations}
    path = mixture_experiment.plot_errors(tmp_path, _summary(cells), cells)
    assert path == tmp_path / figure
    assert path.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == [figure]
