"""Points from a file the user points to: a path or an fsspec URL to an (n, d) .npy array."""

import io

import attrs
import fsspec
import numpy as np
import torch

from flowmap_core.protocols import Batch
from flowmap_core.registry import register


def _load(path: str) -> torch.Tensor:
    try:
        with fsspec.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ValueError(f"dataset.points.path: there is no file at {path!r}") from None
    except Exception as error:  # a URL that cannot be reached, an unknown protocol, ...
        raise ValueError(f"dataset.points.path: cannot open {path!r}: {error}") from None
    try:
        array = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as error:
        raise ValueError(f"dataset.points.path: {path!r} is not a readable .npy array ({error})") from None
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number) or len(array) == 0:
        raise ValueError(
            f"dataset.points.path: {path!r} holds an array of shape {array.shape} and dtype {array.dtype}; "
            "expected a non-empty numeric (n, d) array"
        )
    return torch.from_numpy(array.astype(np.float64))


@register("dataset", "points")
@attrs.define(frozen=True, kw_only=True)
class Points:
    """Your own low-dimensional data: rows of an (n, d) .npy array, drawn with replacement.

    `path` is a local path or any fsspec URL (s3://, gs://, https://, ...; the protocol's
    package must be installed). The file is read once, when the config is built.
    """

    path: str
    points: torch.Tensor = attrs.field(init=False, repr=False, eq=False)
    num_classes: int | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "points", _load(self.path))

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (self.points.shape[1],)

    def sample(self, n: int, *, generator: torch.Generator, device: torch.device, dtype: torch.dtype) -> Batch:
        index = torch.randint(len(self.points), (n,), generator=generator, device=generator.device)
        return Batch(x1=self.points[index.cpu()].to(device=device, dtype=dtype))
