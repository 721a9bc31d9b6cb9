"""Images streamed from webdataset shards on a disk or an object store (any fsspec URL)."""

import posixpath
import warnings
from collections.abc import Iterator

import attrs
import braceexpand
import fsspec
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from flowmap_components.datasets import latents
from flowmap_components.datasets.shard_format import (
    MANIFEST,
    DataError,
    Fault,
    Manifest,
    examples,
    join,
    read_manifest,
)
from flowmap_core.protocols import Batch, StreamRequest
from flowmap_core.registry import register
from flowmap_core.validators import non_negative_integer, positive_integer

WHAT = "dataset.shards.url"


def _split_url(url: str) -> tuple[str, str | None]:
    """(the shard directory, the shard-name pattern or None) of a directory, manifest or pattern URL."""
    name = posixpath.basename(url.rstrip("/"))
    if name == MANIFEST:
        return posixpath.dirname(url), None
    if "{" in name or name.endswith(".tar"):
        return posixpath.dirname(url), name
    return url.rstrip("/"), None


def _select(directory: str, pattern: str | None, manifest: Manifest) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The shard names (and counts) of the manifest that `pattern` names, all of them without one."""
    if pattern is None:
        return manifest.shards, manifest.counts
    wanted = list(braceexpand.braceexpand(pattern))
    known = dict(zip(manifest.shards, manifest.counts, strict=True))
    unknown = [name for name in wanted if name not in known]
    if len(unknown) == len(wanted):
        listed = f"{manifest.shards[0]} ... {manifest.shards[-1]}" if manifest.shards else "no shards"
        raise DataError(
            f"{WHAT}: the pattern {pattern!r} matches no shard of {join(directory, MANIFEST)} "
            f"(it lists {len(manifest.shards)}: {listed})"
        )
    if unknown:
        raise DataError(f"{WHAT}: the pattern {pattern!r} names shards the manifest does not list: {unknown[:3]}")
    return tuple(wanted), tuple(known[name] for name in wanted)


def _check_present(directory: str, names: tuple[str, ...]) -> None:
    """Every named shard exists (one listing of the directory, not one request per shard)."""
    try:
        fs, root = fsspec.core.url_to_fs(directory)
        present = {posixpath.basename(path.rstrip("/")) for path in fs.ls(root, detail=False)}
    except Exception as error:
        raise DataError(f"{WHAT}: cannot list {directory!r}: {type(error).__name__}: {error}") from None
    missing = [name for name in names if name not in present]
    if missing:
        raise DataError(
            f"{WHAT}: {len(missing)} shard(s) the manifest lists are missing from {directory!r}: {missing[:3]}"
        )


ON_ERROR = ("stop", "skip")
WARNED_SKIPS = 5
"""Skips said in a warning before they are only counted."""


@attrs.frozen
class Skipped:
    """Examples a loader worker skipped (`on_error = 'skip'`), carried to the main process."""

    count: int
    message: str


@attrs.frozen
class _Failure:
    """An error met in a loader worker, carried to the main process as a value (one line)."""

    message: str


class _ShardStream(IterableDataset):
    """Batches of one reader's shards: reader `rank * workers + worker` of `world * workers`
    reads every `(world * workers)`-th shard, in a fresh random order each pass, through a
    shuffle buffer, seeded by (seed, rank, step, worker)."""

    def __init__(self, dataset: "Shards", request: StreamRequest, epochs: int | None):
        self.urls = tuple(join(dataset.directory, name) for name in dataset.shard_names)
        self.counts = dataset.shard_counts
        self.manifest = dataset.manifest
        self.buffer = dataset.shuffle_buffer
        self.skip = dataset.on_error == "skip"
        self.request = request
        self.epochs = epochs

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None] | _Failure]:
        try:
            yield from self._batches()
        except DataError as error:
            yield _Failure(str(error))

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None] | Skipped]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        req = self.request
        reader, readers = req.rank * workers + worker, req.world_size * workers
        rng = np.random.default_rng(np.random.SeedSequence([req.seed, req.rank, req.step, worker]))
        mine = list(range(reader, len(self.urls), readers))
        pixels: list[np.ndarray] = []
        labels: list[int | None] = []
        for example in self._shuffled(self._passes(mine, rng), rng):
            if isinstance(example, Skipped):
                yield example
                continue
            pixels.append(example[0])
            labels.append(example[1])
            if len(pixels) == req.batch_size:
                yield self._collate(pixels, labels)
                pixels, labels = [], []
        if pixels:
            yield self._collate(pixels, labels)

    def _passes(self, mine: list[int], rng: np.random.Generator) -> Iterator[tuple[np.ndarray, int | None] | Skipped]:
        epoch = 0
        while self.epochs is None or epoch < self.epochs:
            for index in rng.permutation(mine):
                url, count, faults = self.urls[index], 0, 0
                try:
                    for example in examples(url, self.manifest, skip=self.skip):
                        if isinstance(example, Fault):
                            faults += 1
                            yield Skipped(1, example.message)
                            continue
                        count += 1
                        yield example[1], example[2]
                except DataError as error:
                    if not self.skip:
                        raise
                    missing = max(self.counts[index] - count - faults, 1)
                    yield Skipped(missing, f"{error} (the rest of the shard, {missing} example(s), skipped)")
                    continue
                if count + faults != self.counts[index]:
                    message = (
                        f"shard {url!r} holds {count + faults} examples, but the manifest says "
                        f"{self.counts[index]}: the manifest does not describe these shards (rewrite them)"
                    )
                    if not self.skip or count + faults > self.counts[index]:
                        raise DataError(message)
                    yield Skipped(self.counts[index] - count - faults, message)
            epoch += 1

    def _shuffled(self, items: Iterator, rng: np.random.Generator) -> Iterator:
        """A shuffle buffer: once `buffer` items are held, each new one replaces a random one, which
        leaves (a `Skipped` passes straight through)."""
        held: list = []
        for item in items:
            if isinstance(item, Skipped):
                yield item
                continue
            if len(held) < self.buffer:
                held.append(item)
                continue
            index = int(rng.integers(len(held)))
            yield held[index]
            held[index] = item
        rng.shuffle(held)
        yield from held

    @staticmethod
    def _collate(pixels: list[np.ndarray], labels: list[int | None]) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = torch.from_numpy(np.stack(pixels))
        return x, None if labels[0] is None else torch.tensor(labels, dtype=torch.int64)


def _one_thread(worker: int) -> None:
    torch.set_num_threads(1)


def _identity(item):
    return item


def to_batch(pixels: torch.Tensor, labels: torch.Tensor | None, device: torch.device, dtype: torch.dtype) -> Batch:
    """uint8 pixels in [0, 255] -> `Batch` with x1 in [-1, 1] on `device` in `dtype` (float
    latents as they are)."""
    x1 = pixels.to(device=device, non_blocking=True).to(dtype)
    if pixels.dtype == torch.uint8:
        x1 = x1 / 127.5 - 1
    return Batch(x1=x1, label=None if labels is None else labels.to(device=device, non_blocking=True))


@register("dataset", "shards")
@attrs.define(frozen=True, kw_only=True)
class Shards:
    """Images (and class labels) streamed from the webdataset shards of `tools/make_shards.py`.

    `url` is a shard directory (a path or fsspec URL: `file://`, `memory://`, `s3://`,
    `gs://`, `https://`, ... with the protocol's package installed), its `manifest.json`,
    or a brace pattern of some of its shards (`data/train/shard-{000000..000004}.tar`).
    The manifest gives the data shape `(C, H, W)` and the class count, so a gin file
    names only the URL. Pixels are scaled to [-1, 1].

    Latent shards (`tools/make_shards.py --encode VAE`) stream their latents as the data;
    `images()` is the same split seen through the VAE that made them (its recorded folder,
    or `vae` where it was moved), which evaluation scores and plots.

    Training reads an endless stream: with `workers` loader processes per training
    process, the `world_size * max(workers, 1)` readers each take every n-th shard, so no
    two read the same example; each reads its shards in a fresh random order every pass
    through a shuffle buffer of `shuffle_buffer` examples (the loader interleaves the
    readers' batches, so shards that divide evenly among readers keep every example
    equally frequent; a warning says when they do not). On `--resume` the stream
    starts afresh, seeded by (train.seed, rank, resumed step): the resumed run sees the
    data in another order than the interrupted one would have, and resuming the same
    checkpoint twice gives identical runs. An undecodable or mis-sized image, a missing
    label, or a shard whose example count differs from the manifest stops the run with
    the shard and example named (`on_error = 'stop'`, the default). With
    `on_error = 'skip'` such an example (or the unreadable rest of a truncated shard) is
    skipped, said in a warning for the first few, and counted (`skipped`, logged as
    `skipped_samples` in metrics.jsonl), until more than `max_skipped` stop the run.
    """

    url: str
    workers: int = attrs.field(default=0, validator=non_negative_integer)
    shuffle_buffer: int = attrs.field(default=2000, validator=positive_integer)
    vae: str | None = None
    on_error: str = attrs.field(default="stop", validator=attrs.validators.in_(ON_ERROR))
    max_skipped: int = attrs.field(default=100, validator=non_negative_integer)
    directory: str = attrs.field(init=False)
    manifest: Manifest = attrs.field(init=False, repr=False)
    shard_names: tuple[str, ...] = attrs.field(init=False, repr=False)
    shard_counts: tuple[int, ...] = attrs.field(init=False, repr=False)
    _images: list = attrs.field(init=False, repr=False, eq=False, factory=list)
    _skipped: list = attrs.field(init=False, repr=False, eq=False, factory=lambda: [0])

    def __attrs_post_init__(self) -> None:
        directory, pattern = _split_url(self.url)
        manifest = read_manifest(directory, what=WHAT)
        names, counts = _select(directory, pattern, manifest)
        _check_present(directory, names)
        object.__setattr__(self, "directory", directory)
        object.__setattr__(self, "manifest", manifest)
        object.__setattr__(self, "shard_names", names)
        object.__setattr__(self, "shard_counts", counts)

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest.image_shape)

    @property
    def num_classes(self) -> int | None:
        return self.manifest.num_classes

    @property
    def count(self) -> int:
        """Examples in the selected shards."""
        return sum(self.shard_counts)

    def stream(self, request: StreamRequest, *, epochs: int | None = None) -> Iterator[Batch]:
        """Batches of `request.batch_size` for process `request.rank`: endless, or `epochs`
        passes over this process's shards (the last batch of a finite stream may be short)."""
        readers = request.world_size * max(self.workers, 1)
        if len(self.shard_names) < readers:
            raise DataError(
                f"{len(self.shard_names)} shard(s) at {self.url!r} cannot feed {request.world_size} process(es) x "
                f"{max(self.workers, 1)} reader(s) each: every reader needs a shard of its own. Write more, smaller "
                "shards (tools/make_shards.py --per-shard) or lower dataset.shards.workers"
            )
        if len(self.shard_names) % readers:
            warnings.warn(
                f"{len(self.shard_names)} shards do not divide evenly among {readers} readers: readers with fewer "
                "shards repeat their examples more often in the endless stream",
                stacklevel=2,
            )
        loader = DataLoader(
            _ShardStream(self, request, epochs),
            batch_size=None,
            num_workers=self.workers,
            collate_fn=_identity,
            worker_init_fn=_one_thread if self.workers else None,
            pin_memory=request.device.type == "cuda",
        )
        for item in loader:
            if isinstance(item, _Failure):
                raise DataError(item.message)
            if isinstance(item, Skipped):
                self._skip(item)
                continue
            yield to_batch(*item, request.device, request.dtype)

    @property
    def skipped(self) -> int:
        """Examples skipped so far by this process's streams (`on_error = 'skip'`)."""
        return self._skipped[0]

    def _skip(self, item: Skipped) -> None:
        self._skipped[0] += item.count
        if self._skipped[0] > self.max_skipped:
            raise DataError(
                f"{self._skipped[0]} examples skipped, more than dataset.shards.max_skipped = {self.max_skipped}; "
                f"the last: {item.message}"
            )
        if self._skipped[0] - item.count < WARNED_SKIPS:
            warnings.warn(f"skipped {item.count} example(s): {item.message}", stacklevel=2)

    def read(self, limit: int | None = None) -> Batch:
        """The first `limit` examples (all when None) of one unshuffled pass, in shard order,
        on the CPU in float32."""
        if limit is not None and limit < 1:
            raise DataError(f"read needs a positive limit, got {limit}")
        pixels: list[np.ndarray] = []
        labels: list[int | None] = []
        for name in self.shard_names:
            for _, image, label in examples(join(self.directory, name), self.manifest):
                pixels.append(image)
                labels.append(label)
                if len(pixels) == limit:
                    break
            if len(pixels) == limit:
                break
        x, label = _ShardStream._collate(pixels, labels)
        return to_batch(x, label, torch.device("cpu"), torch.float32)

    def images(self) -> "Shards | DecodedShards":
        """This split as images: itself, or for latents its view through their VAE (made once)."""
        if self.manifest.latent is None:
            return self
        if not self._images:
            self._images.append(DecodedShards(self, latents.codec_for(self.manifest.latent, self.vae)))
        return self._images[0]


@attrs.define(frozen=True, eq=False)
class DecodedShards:
    """A latent shard set seen as the images its VAE decodes its latents to (`Shards.images`)."""

    latents: Shards
    codec: latents.Codec

    @property
    def description(self) -> str:
        """How an evaluation card names this set: the latents' URL and the VAE that decodes them."""
        return f"{self.latents.url} (latents decoded by the VAE {self.latents.manifest.latent.vae_sha256[:12]})"

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.latents.manifest.latent.image_shape)

    @property
    def num_classes(self) -> int | None:
        return self.latents.num_classes

    def decode(self, x: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """Images in [-1, 1] of latents `x`, `chunk` at a time."""
        return torch.cat([self.codec.decode(part) for part in x.split(chunk)])

    def stream(self, request: StreamRequest, *, epochs: int | None = None) -> Iterator[Batch]:
        for batch in self.latents.stream(request, epochs=epochs):
            yield Batch(x1=self.decode(batch.x1), label=batch.label)

    def read(self, limit: int | None = None) -> Batch:
        batch = self.latents.read(limit)
        return Batch(x1=self.decode(batch.x1), label=batch.label)


def read_images(url: str, limit: int | None = None) -> Batch:
    """The first `limit` images (all when None) of the shards at `url`, in [-1, 1], with labels."""
    return Shards(url=url).read(limit)
