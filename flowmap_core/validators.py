"""attrs validators shared by components: each names the field and what is allowed.

A numeric validator is a `Range`, which declares the numbers it accepts: an interval of
reals or of integers, and None where the field is optional. A test reads each numeric
field's range (`declared_range`) and draws values outside it. No range here accepts NaN or
an infinity: a field that takes inf or -inf would have to say so with an inclusive infinite
end. Numeric arguments of a class that is not attrs (a backbone, an optimiser) or of a gin
function declare their ranges with `arguments`.

The validators raise ValueError (a value out of range) or TypeError (a value of the wrong
kind); the `flowmap` command turns either into one line naming the gin binding.
"""

import functools
import inspect
import math
import numbers
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

T = TypeVar("T")


def owner(instance: Any) -> str:
    """`family.name` for registered components (what a gin binding says), else the class's
    `config_name`, else the class's name."""
    cls = type(instance)
    family, name = getattr(cls, "registry_family", None), getattr(cls, "registry_name", None)
    return f"{family}.{name}" if family and name else getattr(cls, "config_name", cls.__name__)


def _where(instance: Any, attribute: attrs.Attribute) -> str:
    """`owner.field`: the field as a gin binding names it."""
    return f"{owner(instance)}.{attribute.name}"


def _bound(value: float) -> str:
    return "inf" if value == math.inf else "-inf" if value == -math.inf else f"{value:g}"


@attrs.frozen
class Range:
    """The numbers a field accepts, and the attrs validator that enforces them.

    A value is accepted if it lies between `low` and `high` (an end is excluded where
    `low_open` or `high_open`; an open infinite end admits only finite numbers), is an int
    where `integer` (not a bool, not 2.0), and is any number otherwise (not a bool, not
    NaN); None is accepted too where `optional`. `name` is how messages say it
    ('positive'); the interval follows it.
    """

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = True
    high_open: bool = True
    integer: bool = False
    optional: bool = False
    name: str = ""

    def __call__(self, instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        self.check(_where(instance, attribute), value)

    def check(self, where: str, value: Any) -> None:
        """Raise TypeError (not a number, or not an int where one is needed) or ValueError
        (NaN, or outside the interval) for `value`, naming `where` and this range."""
        if value is None and self.optional:
            return
        kind = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind):
            raise TypeError(f"{where} must be {self}, got {value!r}")
        if value not in self:
            raise ValueError(f"{where} must be {self}, got {value!r}")

    def __contains__(self, value: float) -> bool:
        """Whether the number `value` is in the interval (NaN never is)."""
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    @property
    def unbounded(self) -> bool:
        """Every finite number (or integer) is in the range."""
        return self.low == -math.inf and self.high == math.inf and self.low_open and self.high_open

    def __str__(self) -> str:
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        interval = f"{left}{_bound(self.low)}, {_bound(self.high)}{right}"
        if self.unbounded:
            text = self.name or ("an integer" if self.integer else "a finite number")
        elif self.name:
            text = f"{self.name}, in {interval}"
        else:
            text = f"{'an integer ' if self.integer else ''}in {interval}"
        return f"None or {text}" if self.optional else text


def in_range(
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> Range:
    """The numbers from `low` to `high`, both ends included unless `low_open` or `high_open`;
    an infinite end is excluded (the number is finite)."""
    low_open, high_open = low_open or low == -math.inf, high_open or high == math.inf
    return Range(low=low, high=high, low_open=low_open, high_open=high_open, integer=integer)


def optional(declared: Range) -> Range:
    """`declared`, and None."""
    return attrs.evolve(declared, optional=True)


finite = Range()
"""Any finite number (a mean, a log-scale location, an interval's end)."""
positive = Range(low=0.0, name="positive")
"""0 < value < inf."""
positive_finite = Range(low=0.0, name="positive and finite")
"""0 < value < inf, said as such (rates, tolerances, factors)."""
non_negative = Range(low=0.0, low_open=False, name="non-negative")
"""0 <= value < inf."""
unit_interval = in_range(0.0, 1.0)
"""0 <= value <= 1 (fractions, times, gaps)."""
open_unit_interval = in_range(0.0, 1.0, low_open=True, high_open=True)
"""0 < value < 1 (rates)."""
integer = Range(integer=True)
"""Any int (a seed)."""
positive_integer = Range(low=1, low_open=False, integer=True, name="a positive integer")
"""An int >= 1 (sizes, step counts)."""
non_negative_integer = Range(low=0, low_open=False, integer=True, name="a non-negative integer")
"""An int >= 0 (warmup steps, counts that may be zero)."""


def declared_range(validator: Any) -> Range | None:
    """The range a field's validator declares: the validator itself if it is a `Range`, the
    `declared_range` attribute of a wrapper that keeps one, or the first range among the
    validators of an attrs `and_` (what a list of validators becomes); None if there is none."""
    if isinstance(validator, Range):
        return validator
    kept = getattr(validator, "declared_range", None)
    if isinstance(kept, Range):
        return kept
    for inner in getattr(validator, "_validators", ()):  # attrs.validators.and_ keeps its list here
        found = declared_range(inner)
        if found is not None:
            return found
    return None


def arguments(name: str = "", /, **ranges: Range) -> Callable[[T], T]:
    """Decorator of a class (its `__init__`) or a function whose numeric arguments are not
    attrs fields (a backbone, a gin function): each named argument is checked against its
    range before the body runs, and `declared_ranges` maps the names to the ranges. The
    signature is kept, so gin sees the arguments. Messages name `name.argument`; without a
    name, the `owner` of the instance (a class) or the function's name."""

    def decorate(target: T) -> T:
        is_class = isinstance(target, type)
        function = target.__init__ if is_class else target
        signature = inspect.signature(function)

        @functools.wraps(function)
        def checked(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            shown = name or (owner(args[0]) if is_class else function.__name__)
            for argument, declared in ranges.items():
                declared.check(f"{shown}.{argument}", bound.arguments[argument])
            return function(*args, **kwargs)

        checked.__signature__ = signature
        if is_class:
            target.__init__ = checked
            target.declared_ranges = ranges
            return target
        checked.declared_ranges = ranges
        return checked

    return decorate


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
