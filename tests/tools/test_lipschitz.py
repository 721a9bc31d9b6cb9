"""tools/lipschitz.py: power iteration recovers known spectral norms (linear maps, the exact
Gaussian flow) and the tool writes a run's estimates."""

import importlib.util
import json
from pathlib import Path

import torch

from flowmap_components.exact.gaussian import GaussianFlow

TOOL = Path(__file__).resolve().parents[2] / "tools" / "lipschitz.py"
_spec = importlib.util.spec_from_file_location("lipschitz", TOOL)
lipschitz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lipschitz)

SINGULAR = torch.tensor([3.0, 1.5, 1.0, 0.5, 0.1], dtype=torch.float64)


def matrix() -> torch.Tensor:
    """A 5 x 5 matrix with singular values SINGULAR (random orthogonal factors)."""
    generator = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(5, 5, generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(5, 5, generator=generator, dtype=torch.float64))
    return u @ torch.diag(SINGULAR) @ v.T


def test_power_iteration_recovers_the_spectral_norm_of_a_linear_map():
    A = matrix()
    scale = torch.tensor([1.0, 2.0, 0.5, 1.0], dtype=torch.float64)
    x = torch.randn(4, 5, dtype=torch.float64)

    def fn(y):
        return (y @ A.T) * scale[:, None]

    expected = 3.0 * scale
    assert torch.allclose(lipschitz.spectral_norms(fn, x, iterations=30), expected, rtol=1e-8)
    assert torch.allclose(lipschitz.jacobian_spectral_norms(fn, x), expected, rtol=1e-12)
    assert not torch.allclose(lipschitz.spectral_norms(fn, x, iterations=0), expected, rtol=1e-2)


def test_estimates_of_the_exact_gaussian_flow_match_its_closed_form():
    """b_t has Jacobian diag((a a' + b b' std^2) / nu_t) and X*_{0,1} = diag(std)."""
    exact = GaussianFlow(mean=(1.0, -0.5), std=(0.5, 1.5))
    generator = torch.Generator().manual_seed(1)
    x0 = torch.randn(64, 2, generator=generator, dtype=torch.float64)
    x1 = exact.sample_data(64, generator=generator, dtype=torch.float64)
    out = lipschitz.estimate(
        lipschitz.ExactMap(exact), exact.interpolant, x0, x1, times=(0.5,), pairs=((0.0, 1.0),), iterations=30
    )
    var = torch.tensor([0.25, 2.25], dtype=torch.float64)
    slope = (-(1 - 0.5) + 0.5 * var) / ((1 - 0.5) ** 2 + 0.5**2 * var)
    assert abs(out["velocity"]["0.5"]["max"] - slope.abs().max().item()) < 1e-8
    assert abs(out["velocity"]["0.5"]["q50"] - slope.abs().max().item()) < 1e-8
    assert abs(out["map"]["0->1"]["max"] - 1.5) < 1e-8


def test_the_tool_writes_a_runs_estimates(smoke_run, tmp_path, capsys):
    out = tmp_path / "lipschitz.json"
    argv = [str(smoke_run), "--n", "32", "--iterations", "5", "--times", "0", "1", "--pairs", "0:1", "--out", str(out)]
    assert lipschitz.main(argv) == 0
    result = json.loads(out.read_text())["results"]["ema_0.999"]
    assert set(result["velocity"]) == {"0", "1"} and set(result["map"]) == {"0->1"}
    stats = result["map"]["0->1"]
    assert 0 < stats["q50"] <= stats["q90"] <= stats["max"] < float("inf")
    assert "| ema_0.999 | velocity | 0 |" in capsys.readouterr().out
