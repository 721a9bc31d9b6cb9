"""One test instance per registered component, and which objectives are residuals (one table).

Components constructible without arguments are built with their defaults; the table
below gives the rest. A newly registered component that needs arguments makes
`instance()` fail, naming the entry to add here.
"""

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowmap_components.datasets.checkerboard import Checkerboard
from flowmap_components.datasets.points import Points
from flowmap_components.datasets.scaled import Scaled
from flowmap_components.datasets.shards import Shards
from flowmap_components.datasets.synthetic_images import write_synthetic
from flowmap_components.interpolants.general import General
from flowmap_components.objectives.esd import ESD
from flowmap_components.objectives.fault import Fault
from flowmap_components.objectives.lsd import LSD
from flowmap_components.objectives.psd import PSD
from flowmap_components.objectives.split import Split
from flowmap_components.objectives.weighted_sum import WeightedSum
from flowmap_components.stopgrad.policies import MeanVelocityStopGradient
from flowmap_components.time_samplers.beta_gap import BetaGap
from flowmap_components.time_samplers.full_square import FullSquare
from flowmap_components.time_samplers.mixture import Mixture
from flowmap_components.time_samplers.on_grid import OnGrid
from flowmap_components.time_samplers.shift import Shift
from flowmap_components.time_samplers.uniform import UniformTriangle
from flowmap_components.velocities.conditional import ConditionalVelocity
from flowmap_core import registry

BUILDERS: dict[tuple[str, str], Callable[[], Any]] = {
    # curved schedules with exact boundary values
    ("interpolant", "general"): lambda: General(
        alpha=lambda t: (1 - t) ** 2, beta=lambda t: torch.sin(0.5 * torch.pi * t)
    ),
    ("objective", "split"): lambda: Split(off_diagonal=LSD()),
    ("objective", "fault"): lambda: Fault(objective=LSD()),
    ("objective", "weighted_sum"): lambda: WeightedSum(terms=(LSD(), PSD()), weights=(1.0, 0.5)),
    ("time_sampler", "full_square"): lambda: FullSquare(base=UniformTriangle()),
    ("dataset", "points"): lambda: Points(path=str(points_file())),
    ("dataset", "shards"): lambda: Shards(url=shards_dir()),
    ("dataset", "scaled"): lambda: Scaled(dataset=Checkerboard(), scale=0.5),
    ("time_sampler", "on_grid"): lambda: OnGrid(base=UniformTriangle(), fraction=0.5),
    ("time_sampler", "shift"): lambda: Shift(base=UniformTriangle(), factor=3.0),
    ("time_sampler", "mixture"): lambda: Mixture(
        samplers=(UniformTriangle(), BetaGap(concentration=(2.0, 1.0))), weights=(1.0, 1.0)
    ),
}

# Variants tested besides the default instance.
VARIANTS: dict[tuple[str, str], list[Callable[[], Any]]] = {
    ("objective", "psd"): [lambda: PSD(h=None)],
    ("objective", "esd"): [lambda: ESD(velocity=ConditionalVelocity(), stopgrad=MeanVelocityStopGradient())],
    ("time_sampler", "on_grid"): [lambda: OnGrid(base=UniformTriangle(), fraction=0.5, whole_path=True)],
}


def is_residual(objective: Any) -> bool:
    """Whether an objective is a self-distillation residual: exactly zero at the exact map.
    Objectives closed by the conditional velocity are regressions instead (zero only in
    expectation over the pair given x_t)."""
    if objective.registry_name == "weighted_sum":
        return all(is_residual(term) for term in objective.terms)
    velocity = getattr(objective, "velocity", None)
    conditional = velocity is not None and velocity.needs_interpolant_point
    return objective.registry_name in {"esd", "lsd", "psd"} and not conditional


def instance(family: str, name: str) -> Any:
    """The test instance of component `name` of `family`."""
    key = (family, name)
    if key in BUILDERS:
        return BUILDERS[key]()
    try:
        return registry.get(family, name)()
    except TypeError as error:
        raise TypeError(f"add a test instance for {family} {name!r} to tests/instances.py: {error}") from error


def instances(family: str) -> list[tuple[str, Any]]:
    """(id, instance) for every registered component of `family`, variants included."""
    out = []
    for name in registry.names(family):
        out.append((name, instance(family, name)))
        out += [(f"{name}-{i}", build()) for i, build in enumerate(VARIANTS.get((family, name), []), 1)]
    return out


# Discrete-time objectives: at a finite step their minimiser is not the flow map (a known
# bias of discrete consistency training), so they are tested in their continuous limit.
DISCRETE = {"consistency"}


def points_file() -> Path:
    """A small (n, 3) .npy file for the `points` dataset, written once per session."""
    path = Path(tempfile.gettempdir()) / "flowmap-test-points.npy"
    if not path.is_file():
        np.save(path, np.random.default_rng(0).normal(size=(500, 3)))
    return path


# Objectives that need the network to be conditioned (labels, guidance scales): tested
# on a conditional closed-form case of their own.
CONDITIONAL = {"guided_flow_matching"}


# Objectives of single-time maps in TrigFlow's variables (sCM): defined only at t = 1 under
# the trigonometric interpolant, tested on cases of their own.
TRIGFLOW = {"scm"}


def shards_dir() -> str:
    """Small labelled 8x8 gray shards for the `shards` dataset, written once per session."""
    path = Path(tempfile.gettempdir()) / "flowmap-test-shards"
    if not (path / "train" / "manifest.json").is_file():
        write_synthetic(str(path), (1, 8, 8), train=600, test=8, per_shard=100)
    return str(path / "train")
