"""Frozen attrs records that `torch.compile` can build inside a traced training step.

An attrs frozen class sets its fields in `__init__` through `object.__setattr__.__get__`,
which TorchDynamo (torch 2.13) cannot trace, so building such a record (an interpolant's
`Coefficients`, an objective's `ObjectiveOutput`, a `FlowMap` restricted to some rows)
inside a compiled step breaks the graph. `traceable` gives a record class an `__init__`
that sets the same fields with plain `object.__setattr__` calls, which Dynamo traces; the
class stays an attrs class (`attrs.fields`, `attrs.evolve`, equality, repr, frozenness).
`evolve` is `attrs.evolve` for such records, traceable as well.
"""

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

R = TypeVar("R")


def traceable(cls: type[R]) -> type[R]:
    """Class decorator (outside `@attrs.frozen`): an `__init__` TorchDynamo traces, for a frozen
    attrs record whose fields have no validators or converters."""
    fields = attrs.fields(cls)
    checked = [field.name for field in fields if field.validator is not None or field.converter is not None]
    if checked:
        raise TypeError(f"records.traceable: {cls.__name__}.{checked[0]} has a validator or converter")
    # Plain tuples, not attrs' Attribute objects, which Dynamo cannot hold.
    specs = tuple((field.name, field.init, *_default(field.default)) for field in fields)
    by_position = tuple(field.name for field in fields if field.init and not field.kw_only)
    init = _init(cls.__name__, specs, by_position)
    init.__signature__ = inspect.signature(cls.__init__)
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init
    cls.__record_init_fields__ = tuple(field.name for field in fields if field.init)
    return cls


def _default(default: Any) -> tuple[str, Any]:
    """('factory', f), ('value', v) or ('required', None)."""
    if isinstance(default, attrs.Factory):
        return "factory", default.factory
    if default is attrs.NOTHING:
        return "required", None
    return "value", default


def _init(name: str, specs: tuple, by_position: tuple) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(by_position):
            raise TypeError(f"{name} takes at most {len(by_position)} positional arguments")
        values = dict(zip(by_position, args, strict=False))
        for key, value in kwargs.items():
            if key in values:
                raise TypeError(f"{name} got two values for {key}")
            values[key] = value
        for field, init, kind, default in specs:
            if init and field in values:
                value = values.pop(field)
            elif kind == "factory":
                value = default()
            elif kind == "value":
                value = default
            else:
                raise TypeError(f"{name} needs {field}")
            object.__setattr__(self, field, value)
        if values:
            raise TypeError(f"{name} has no field {', '.join(sorted(values))}")

    return __init__


def evolve(record: R, **changes: Any) -> R:
    """`attrs.evolve(record, **changes)` for a `traceable` record, traceable by TorchDynamo."""
    values = {name: getattr(record, name) for name in type(record).__record_init_fields__}
    values.update(changes)
    return type(record)(**values)
