"""Where batches come from: memory datasets drawn from the trainer's generator, streams their own."""

import attrs
import pytest
import torch

from flowmap_components.datasets.checkerboard import Checkerboard
from flowmap_core import data
from flowmap_core.protocols import StreamRequest

REQUEST = StreamRequest(batch_size=16, seed=0)


def test_a_memory_dataset_is_drawn_lazily_from_the_given_generator():
    """The batches equal `sample` calls on the same generator, one per `next()`, so a
    checkpointed generator state replays the data exactly."""
    dataset = Checkerboard()
    generator, replay = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    stream = data.batches(dataset, REQUEST, generator)
    assert torch.equal(generator.get_state(), replay.get_state()), "nothing is drawn before the first next()"
    for _ in range(3):
        expected = dataset.sample(16, generator=replay, device=REQUEST.device, dtype=REQUEST.dtype)
        assert torch.equal(next(stream).x1, expected.x1)


@attrs.define
class Neither:
    data_shape: tuple[int, ...] = (2,)
    num_classes: int | None = None


def test_a_dataset_that_neither_samples_nor_streams_is_refused():
    with pytest.raises(data.DatasetError, match=r"train\.dataset: Neither has neither sample\(n, generator=\.\.\.\)"):
        data.batches(Neither(), REQUEST, torch.Generator())
