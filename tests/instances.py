"""One test instance per registered component, and which objectives are residuals (one table).

Components constructible without arguments are built with their defaults; the table
below gives the rest. A newly registered component that needs arguments makes
`instance()` fail, naming the entry to add here.
"""

from collections.abc import Callable
from typing import Any

import torch

from components.interpolants.general import General
from components.objectives.lsd import LSD
from components.objectives.psd import PSD
from components.objectives.split import Split
from components.objectives.weighted_sum import WeightedSum
from components.time_samplers.full_square import FullSquare
from components.time_samplers.uniform import UniformTriangle
from flowmap_core import registry

BUILDERS: dict[tuple[str, str], Callable[[], Any]] = {
    # curved schedules with exact boundary values
    ("interpolant", "general"): lambda: General(
        alpha=lambda t: (1 - t) ** 2, beta=lambda t: torch.sin(0.5 * torch.pi * t)
    ),
    ("objective", "split"): lambda: Split(off_diagonal=LSD()),
    ("objective", "weighted_sum"): lambda: WeightedSum(terms=(LSD(), PSD()), weights=(1.0, 0.5)),
    ("time_sampler", "full_square"): lambda: FullSquare(base=UniformTriangle()),
}

# Variants tested besides the default instance.
VARIANTS: dict[tuple[str, str], list[Callable[[], Any]]] = {
    ("objective", "psd"): [lambda: PSD(h=None)],
}

# Objectives that are self-distillation residuals: zero at the exact flow map.
RESIDUALS = {"esd", "lsd", "psd", "weighted_sum"}


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
