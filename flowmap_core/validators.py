"""attrs validators shared by components: each names the field and what is allowed."""

from typing import Any

import attrs


def _where(instance: Any, attribute: attrs.Attribute) -> str:
    return f"{type(instance).__name__}.{attribute.name}"


def positive(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    """value > 0."""
    if not value > 0:
        raise ValueError(f"{_where(instance, attribute)} must be positive, got {value}")


def non_negative(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    """value >= 0."""
    if not value >= 0:
        raise ValueError(f"{_where(instance, attribute)} must be >= 0, got {value}")


def unit_interval(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    """0 <= value <= 1 (fractions, times, gaps)."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{_where(instance, attribute)} must be in [0, 1], got {value}")
