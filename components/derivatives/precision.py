"""The precision a derivative strategy computes in, whatever the surrounding autocast."""

from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import torch
from torch import Tensor

PRECISIONS = ("float32", "autocast")
"""'float32': autocast off inside the derivative (value and tangent in the weights' dtype, float32
or float64); 'autocast': follow the surrounding autocast (bfloat16 under `train.precision`)."""


def check_precision(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if value not in PRECISIONS:
        raise ValueError(
            f"{type(instance).__name__}.precision must be one of {', '.join(map(repr, PRECISIONS))}, got {value!r}"
        )


@contextmanager
def computed_in(precision: str, x: Tensor) -> Iterator[None]:
    """Autocast off on x's device for 'float32'; nothing changes for 'autocast'."""
    if precision == "float32" and torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            yield
    else:
        yield
