"""Backward maps: the exact mixture map goes data -> noise -> data (and back) to 1e-8, and
`flowmap encode` carries a trained run's data to noise and records both round trips."""

import json
import math
import shutil

import numpy as np
import torch

from flowmap_components.exact.gaussian_mixture import GaussianMixtureFlow
from flowmap_core import cli, round_trip


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
    assert "round trip RMS error" in capsys.readouterr().out
