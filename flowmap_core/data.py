"""Where a run's batches come from: drawn from memory, or streamed from shards.

The trainer asks `batches(dataset, request, generator)` once (again after a resume) and
then takes `next()` of it every step; it never asks what kind of dataset it has.
A `StreamingDataset` supplies its own stream; any other `Dataset` is drawn with
`dataset.sample(n, generator=...)` from the trainer's host generator, lazily, one batch
per `next()`, so the generator's checkpointed state replays the same data on resume.
It is drawn on the host and copied to the device without waiting (`non_blocking`), so a
training step on CUDA does not synchronise with the host for its data.
"""

from collections.abc import Iterator

import torch

from flowmap_core.errors import FlowmapError
from flowmap_core.protocols import Batch, Dataset, StreamingDataset, StreamRequest


class DatasetError(FlowmapError, TypeError):
    """A dataset that neither draws samples nor streams them."""


def drawn_from_memory(dataset: object) -> bool:
    """Whether `dataset` draws its batches from memory (has `sample`), as opposed to streaming them."""
    return callable(getattr(dataset, "sample", None))


def batches(dataset: Dataset | StreamingDataset, request: StreamRequest, generator: torch.Generator) -> Iterator[Batch]:
    """The batches of `request.batch_size` examples this process trains on, from `request.step` on."""
    if isinstance(dataset, StreamingDataset):
        return dataset.stream(request)
    if drawn_from_memory(dataset):
        return _drawn(dataset, request, generator)
    raise DatasetError(
        f"train.dataset: {type(dataset).__name__} has neither sample(n, generator=...) nor stream(request); "
        "a dataset must draw batches from memory or stream them (see flowmap_core/protocols.py)"
    )


def _drawn(dataset: Dataset, request: StreamRequest, generator: torch.Generator) -> Iterator[Batch]:
    host = torch.device("cpu")
    while True:
        batch = dataset.sample(request.batch_size, generator=generator, device=host, dtype=request.dtype)
        yield Batch(x1=to_device(batch.x1, request.device), label=to_device(batch.label, request.device))


def to_device(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """A host tensor copied to `device` without making the host wait for the device (a copy
    from the host is staged at once, so the source may be freed right after)."""
    return None if tensor is None else tensor.to(device, non_blocking=True)
