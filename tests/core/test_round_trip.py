"""Backward maps: the exact mixture map goes data -> noise -> data (and back) to 1e-8, and
`flowmap encode` carries a trained run's data to noise and records both round trips, and on
the mixture its encoding's error against the exact map."""

import json
import math
import shutil

import numpy as np
import torch

from flowmap_components.exact.gaussian_mixture import GaussianMixtureFlow
from flowmap_core import cli, config, round_trip


def test_the_exact_mixture_map_round_trips_to_1e_8():
    exact = GaussianMixtureFlow()
    x1, _ = exact.sample(64, generator=torch.Generator().manual_seed(0))
    x0 = torch.randn(64, *exact.data_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for steps in (1, 3):
        errors = round_trip.round_trips(exact.flow_map, x0, x1, steps)
        assert errors["noise"] < 1e-8 and errors["data"] < 1e-8, errors
    noise = round_trip.encode(exact.flow_map, x1, 1)
    assert round_trip.rms(noise, x1) > 0.1  # it did move: data is not noise


def test_encode_a_trained_run_and_record_its_round_trips(smoke_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    out = tmp_path / "noise.npy"
    assert cli.main(["encode", str(run_dir), "--steps", "2", "--n", "300", "--out", str(out)]) == 0
    noise = np.load(out)
    assert noise.shape == (300, 2) and np.isfinite(noise).all()
    tool = json.loads((run_dir / "scores.json").read_text())["tool"]
    assert math.isfinite(tool["round_trip_data_k2"]) and math.isfinite(tool["round_trip_noise_k2"])
    assert "encode_error_k2" not in tool  # the checkerboard has no known map
    assert "round trip RMS error" in capsys.readouterr().out


def test_the_encoding_error_is_zero_for_the_exact_map_and_the_shift_of_a_shifted_one():
    exact = GaussianMixtureFlow()
    x1, _ = exact.sample(64, generator=torch.Generator().manual_seed(0))
    three_jumps = round_trip.encode(exact.flow_map, x1, 3)
    assert round_trip.encoding_error(three_jumps, exact, x1) < 1e-8  # three exact jumps compose to one

    def shifted(x, s, t):
        return exact.flow_map(x, s, t) + 0.1 * (s > t)[:, None]

    assert math.isclose(round_trip.encoding_error(round_trip.encode(shifted, x1, 1), exact, x1), 0.1, rel_tol=1e-6)


def test_encode_scores_a_mixture_run_against_its_exact_map(tmp_path, capsys):
    run_dir = tmp_path / "mixture"
    smoke = config.GIN_DIR / "smoke" / "checkerboard_lsd.gin"
    mixture = ["include 'datasets/gaussian_mixture_nd.gin'", "exact.mixture_means.dimension = 3", "train.steps = 20"]
    config_file = tmp_path / "mixture.gin"
    config_file.write_text(f"include '{smoke}'\n" + "\n".join(mixture) + "\n")
    assert cli.main(["train", str(config_file), "--run-dir", str(run_dir), "--no-progress", "--no-eval"]) == 0
    out = tmp_path / "noise.npy"
    assert cli.main(["encode", str(run_dir), "--steps", "1", "--n", "200", "--out", str(out)]) == 0
    assert np.load(out).shape == (200, 3)
    tool = json.loads((run_dir / "scores.json").read_text())["tool"]
    assert 0 < tool["encode_error_k1"] < math.inf
    assert "against the exact map's encoding" in capsys.readouterr().out
