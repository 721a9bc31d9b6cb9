"""Tensor shape aliases (jaxtyping) and the runtime shape-check switch.

Public tensor-facing methods are annotated with the aliases below and decorated with
`@typechecked`. Whether that decorator checks anything is decided once, when this module
is first imported: with the environment variable `FLOWMAP_TYPECHECK=1` (set by the test
suite's conftest and by `flowmap --typecheck`) every decorated call is checked by
beartype through jaxtyping, and a wrong shape fails with a message naming the argument
and the expected and actual shapes. Otherwise `typechecked` returns the function itself,
so the training hot loop pays nothing. Inside a region that `torch.compile` traces, the
checks step aside (the compiler cannot trace beartype); they still run on every eager call.

Do not add `from __future__ import annotations` to checked modules: jaxtyping needs the
annotations as objects.
"""

import functools
import os
from collections.abc import Callable
from typing import TypeVar

import torch
from jaxtyping import Bool, Float, Int, jaxtyped
from torch import Tensor

__all__ = [
    "CHECKS_ON",
    "Bool",
    "Data",
    "Float",
    "Heads",
    "Int",
    "Labels",
    "Scalar",
    "Tensor",
    "Times",
    "typechecked",
]

CHECKS_ON: bool = os.environ.get("FLOWMAP_TYPECHECK", "").strip().lower() in {"1", "true", "yes", "on"}

Times = Float[Tensor, "batch"]
"""One time per example."""
Data = Float[Tensor, "batch *shape"]
"""A batch of points (2D points, images, ...); every `Data` argument of one call shares its shape."""
Heads = Float[Tensor, "batch heads *shape"]
"""Backbone output: `heads` data-shaped outputs per example."""
Labels = Int[Tensor, "batch"]
"""One integer class label per example."""
Scalar = Float[Tensor, ""]
"""A 0-dimensional float tensor."""

F = TypeVar("F", bound=Callable)


def typechecked(fn: F) -> F:
    """Check `fn`'s jaxtyping annotations at every call when checks are on; else a no-op."""
    if not CHECKS_ON:
        return fn
    from beartype import beartype

    checked = jaxtyped(typechecker=beartype)(fn)

    @functools.wraps(fn)
    def checked_unless_compiling(*args, **kwargs):
        if torch.compiler.is_compiling():
            return fn(*args, **kwargs)
        return checked(*args, **kwargs)

    return checked_unless_compiling  # type: ignore[return-value]
