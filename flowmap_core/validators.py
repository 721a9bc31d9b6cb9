"""attrs validators shared by components: each names the field and what is allowed.

They raise ValueError (a value out of range) or TypeError (a value of the wrong kind);
the `flowmap` command turns either into one line naming the gin binding.
"""

import math
import numbers
from typing import Any

import attrs


def _where(instance: Any, attribute: attrs.Attribute) -> str:
    """`family.name.field` for registered components (what a gin binding says), else `Class.field`."""
    cls = type(instance)
    family, name = getattr(cls, "registry_family", None), getattr(cls, "registry_name", None)
    owner = f"{family}.{name}" if family and name else getattr(cls, "config_name", cls.__name__)
    return f"{owner}.{attribute.name}"


def _real(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{_where(instance, attribute)} must be a number, got {value!r}")
    if math.isnan(value):
        raise ValueError(f"{_where(instance, attribute)} must be a number, got nan")


def positive(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    """value > 0."""
    _real(instance, attribute, value)
    if not value > 0:
        raise ValueError(f"{_where(instance, attribute)} must be positive, got {value}")


def positive_finite(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    """0 < value < inf."""
    _real(instance, attribute, value)
    if not 0 < value < math.inf:
        raise ValueError(f"{_where(instance, attribute)} must be positive and finite, got {value}")


def non_negative(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    """value >= 0."""
    _real(instance, attribute, value)
    if not value >= 0:
        raise ValueError(f"{_where(instance, attribute)} must be >= 0, got {value}")


def unit_interval(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    """0 <= value <= 1 (fractions, times, gaps)."""
    _real(instance, attribute, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{_where(instance, attribute)} must be in [0, 1], got {value}")


def open_unit_interval(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    """0 < value < 1 (rates)."""
    _real(instance, attribute, value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{_where(instance, attribute)} must be in (0, 1), got {value}")


def integer(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """An int (not a bool, not 2.5)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{_where(instance, attribute)} must be an integer, got {value!r}")


def positive_integer(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """An int >= 1."""
    integer(instance, attribute, value)
    if value < 1:
        raise ValueError(f"{_where(instance, attribute)} must be a positive integer, got {value}")


def boolean(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """True or False."""
    if not isinstance(value, bool):
        raise TypeError(f"{_where(instance, attribute)} must be True or False, got {value!r}")


def instance_not_class(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """A component instance, not its class: `@interpolant.linear()`, not `@interpolant.linear`."""
    if isinstance(value, type):
        raise TypeError(f"{_where(instance, attribute)} got a class where an instance is expected: {class_hint(value)}")


def class_hint(value: type) -> str:
    """How to write the instance of a class given by a gin reference without parentheses."""
    family, name = getattr(value, "registry_family", None), getattr(value, "registry_name", None)
    ref = f"@{family}.{name}" if family and name else f"@{value.__name__}"
    return f"{ref} is the class; write {ref}() with parentheses"


_PLAIN = (str, bytes, numbers.Number, tuple, list, dict, type(None))


def component(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """A component instance (`@family.name()`): not its class, not a plain value like 'linear' or 3."""
    instance_not_class(instance, attribute, value)
    if isinstance(value, _PLAIN):
        raise TypeError(
            f"{_where(instance, attribute)} must be a component, e.g. @<family>.<name>() in gin; got {value!r}"
        )
