"""flowmap's image shards on disk: webdataset tar files beside a `manifest.json`.

A shard directory (a local path or any fsspec URL: `file://`, `memory://`, `s3://`,
`gs://`, `https://`, ... when the protocol's package is installed) holds one split::

    manifest.json
    shard-000000.tar   shard-000001.tar   ...

Each tar member pair `<key>.png` (or `.jpg`) and `<key>.cls` (the integer class label as
ASCII, only for labelled sets) is one example, the webdataset convention. The manifest
records what a reader needs without opening a shard: the image shape `(C, H, W)`, the
class names, the example count of every shard, and the per-channel mean and standard
deviation of the pixel values scaled to [0, 1]. `tools/make_shards.py` writes it.

A latent shard set (`make_shards.py --encode VAE`) holds `<key>.npy` float16 arrays
`(c, h, w)` instead of images; its manifest's `image_shape` is the latents' shape, its
mean and std are the latents', and `latent` (a `LatentInfo`) says which VAE made them.
"""

import io
import json
import posixpath
from collections.abc import Iterable, Iterator
from typing import Any

import attrs
import fsspec
import numpy as np
from PIL import Image

from flowmap_core.errors import FlowmapError

MANIFEST = "manifest.json"
FORMAT = "flowmap-shards/1"
IMAGE_SUFFIXES = ("png", "jpg", "jpeg")
LATENT_SUFFIX = "npy"
MODES = {1: "L", 3: "RGB"}
"""PIL image mode of each channel count a shard may hold."""


class DataError(FlowmapError, ValueError):
    """Shards that cannot be read as their manifest says: missing, undecodable, inconsistent."""


@attrs.frozen(kw_only=True)
class LatentInfo:
    """How a shard set's latents were made: the VAE's folder and weights hash, the normalisation, the image shape."""

    vae: str
    vae_sha256: str
    scale: float
    shift: float
    image_shape: tuple[int, int, int] = attrs.field(converter=tuple)


def _latent_info(value: Any) -> "LatentInfo | None":
    return LatentInfo(**value) if isinstance(value, dict) else value


@attrs.frozen(kw_only=True)
class Manifest:
    """What a shard directory holds: `shards[i]` has `counts[i]` examples of `image_shape`."""

    image_shape: tuple[int, int, int] = attrs.field(converter=tuple)
    shards: tuple[str, ...] = attrs.field(converter=tuple)
    counts: tuple[int, ...] = attrs.field(converter=tuple)
    classes: tuple[str, ...] | None = attrs.field(default=None, converter=attrs.converters.optional(tuple))
    mean: tuple[float, ...] = attrs.field(default=(), converter=tuple)
    std: tuple[float, ...] = attrs.field(default=(), converter=tuple)
    source: str = ""
    latent: LatentInfo | None = attrs.field(default=None, converter=_latent_info)

    @property
    def count(self) -> int:
        return sum(self.counts)

    @property
    def num_classes(self) -> int | None:
        return None if self.classes is None else len(self.classes)

    def to_json(self) -> str:
        record = {"format": FORMAT, "count": self.count, **attrs.asdict(self)}
        return json.dumps(record, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> "Manifest":
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{where} is not valid JSON ({error})") from None
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            found = record.get("format") if isinstance(record, dict) else type(record).__name__
            raise DataError(f"{where} is not a flowmap shard manifest (format {found!r}, expected {FORMAT!r})")
        fields = {field.name for field in attrs.fields(cls)}
        try:
            manifest = cls(**{key: value for key, value in record.items() if key in fields})
        except (TypeError, ValueError) as error:
            raise DataError(f"{where} is missing or mangles a field: {error}") from None
        if len(manifest.shards) != len(manifest.counts) or record.get("count") != manifest.count:
            raise DataError(
                f"{where} disagrees with itself: {len(manifest.shards)} shards, {len(manifest.counts)} counts, "
                f"count {record.get('count')} but the counts add up to {manifest.count}"
            )
        images = manifest.image_shape if manifest.latent is None else manifest.latent.image_shape
        if len(manifest.image_shape) != 3 or len(images) != 3 or images[0] not in MODES:
            raise DataError(f"{where}: image_shape must be (channels, height, width) with 1 or 3 channels")
        return manifest


def join(base: str, name: str) -> str:
    """`name` inside the directory URL `base` (a path or protocol://path)."""
    return posixpath.join(base.rstrip("/"), name) if base else name


def read_manifest(directory: str, *, what: str) -> Manifest:
    """The manifest of the shard directory `directory`; `what` names the setting in errors."""
    url = join(directory, MANIFEST)
    try:
        with fsspec.open(url, "rt") as f:
            text = f.read()
    except FileNotFoundError:
        raise DataError(
            f"{what}: there is no {MANIFEST} at {url!r}; is the path right? Shards are written by tools/make_shards.py"
        ) from None
    except Exception as error:  # an unknown protocol, a missing bucket, no credentials, ...
        raise DataError(f"{what}: cannot open {url!r}: {type(error).__name__}: {error}") from None
    return Manifest.from_json(text, url)


def decode_image(data: bytes, image_shape: tuple[int, int, int], where: str) -> np.ndarray:
    """A PNG or JPEG's pixels as uint8 `(C, H, W)`, checked against `image_shape`."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode, size = image.mode, image.size
            pixels = np.asarray(image)
    except Exception as error:
        raise DataError(f"{where}: undecodable image ({type(error).__name__}: {error})") from None
    channels, height, width = image_shape
    if mode != MODES[channels] or size != (width, height):
        found = f"{len(mode)}x{size[1]}x{size[0]} (mode {mode})"
        expected = f"{channels}x{height}x{width} (mode {MODES[channels]})"
        raise DataError(
            f"{where}: an image of {found}, but the manifest says {expected}; "
            "every image of a shard set must have the manifest's size and channels"
        )
    return pixels.reshape(height, width, channels).transpose(2, 0, 1)


def decode_latent(data: bytes, shape: tuple[int, int, int], where: str) -> np.ndarray:
    """A `.npy` member's float16 latent `(c, h, w)`, checked against the manifest's `shape`."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as error:
        raise DataError(f"{where}: an unreadable .npy latent ({type(error).__name__}: {error})") from None
    if array.dtype != np.float16 or array.shape != tuple(shape):
        raise DataError(f"{where}: a latent of {array.dtype} {array.shape}, but the manifest says float16 {shape}")
    return array


def encode_latent(latent: np.ndarray) -> bytes:
    """`.npy` bytes of a latent, stored as float16."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(latent, dtype=np.float16), allow_pickle=False)
    return buffer.getvalue()


@attrs.frozen
class Fault:
    """An example skipped under `skip=True`: why (one line)."""

    message: str


def examples(
    url: str, manifest: Manifest, *, skip: bool = False
) -> Iterator[tuple[str, np.ndarray, int | None] | Fault]:
    """(key, pixels `(C, H, W)` uint8, label) of every example of the shard at `url`, in order.

    Stops with a `DataError` naming the shard and key at an undecodable or mis-sized
    image, a missing or out-of-range label, or a missing file; with `skip`, a bad example
    is yielded as a `Fault` instead and the shard read on (a shard that cannot be read
    further still stops it).
    """
    from webdataset.tariterators import group_by_keys, tar_file_expander

    try:
        stream = fsspec.open(url, "rb").open()
    except FileNotFoundError:
        raise DataError(f"shard {url!r} is listed in the manifest but does not exist") from None
    except Exception as error:
        raise DataError(f"cannot open shard {url!r}: {type(error).__name__}: {error}") from None
    with stream:
        try:
            for sample in group_by_keys(tar_file_expander([{"url": url, "stream": stream}])):
                try:
                    example = _example(sample, url, manifest)
                except DataError as error:
                    if not skip:
                        raise
                    yield Fault(str(error))
                    continue
                yield example
        except DataError:
            raise
        except Exception as error:
            raise DataError(f"shard {url!r} is not a readable tar archive ({type(error).__name__}: {error})") from None


def _example(sample: dict[str, Any], url: str, manifest: Manifest) -> tuple[str, np.ndarray, int | None]:
    key = sample["__key__"]
    where = f"shard {url!r}, example {key!r}"
    suffixes = IMAGE_SUFFIXES if manifest.latent is None else (LATENT_SUFFIX,)
    found = [suffix for suffix in suffixes if suffix in sample]
    if len(found) != 1:
        raise DataError(f"{where}: expected one of {', '.join(suffixes)}, found files {sorted(sample)}")
    if manifest.latent is None:
        pixels = decode_image(sample[found[0]], manifest.image_shape, where)
    else:
        pixels = decode_latent(sample[found[0]], manifest.image_shape, where)
    if manifest.classes is None:
        return key, pixels, None
    try:
        label = int(sample["cls"])
    except (KeyError, ValueError):
        raise DataError(f"{where}: the manifest names classes but the example has no integer .cls label") from None
    if not 0 <= label < len(manifest.classes):
        raise DataError(f"{where}: label {label} is not one of the manifest's {len(manifest.classes)} classes")
    return key, pixels, label


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG bytes of uint8 pixels `(H, W)` or `(H, W, C)` with C in (1, 3)."""
    image = Image.fromarray(pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _close(writer) -> None:
    """Finish a shard: the tar stream, then the file under it (TarWriter leaves a file it was given open)."""
    if writer is not None:
        writer.close()
        writer.stream.close()


def _encoded(
    index: int, pixels: np.ndarray, latent: LatentInfo | None
) -> tuple[tuple[int, int, int], dict[str, bytes], np.ndarray]:
    """An example's shape `(C, H, W)`, its tar member and its values per channel `(n, C)`
    for the manifest's statistics (pixels scaled to [0, 1], latents as they are)."""
    pixels = np.asarray(pixels)
    if latent is not None:
        if pixels.ndim != 3 or not np.issubdtype(pixels.dtype, np.floating):
            raise DataError(f"example {index}: expected a float latent (c, h, w), got {pixels.dtype} {pixels.shape}")
        values = pixels.reshape(pixels.shape[0], -1).T.astype(np.float64)
        return tuple(pixels.shape), {LATENT_SUFFIX: encode_latent(pixels)}, values
    hwc = pixels[..., None] if pixels.ndim == 2 else pixels
    if pixels.dtype != np.uint8 or hwc.ndim != 3 or hwc.shape[2] not in MODES:
        raise DataError(
            f"example {index}: expected uint8 pixels (H, W) or (H, W, 1 or 3), got {pixels.dtype} {pixels.shape}"
        )
    values = hwc.reshape(-1, hwc.shape[2]).astype(np.float64) / 255.0
    return (hwc.shape[2], hwc.shape[0], hwc.shape[1]), {"png": encode_png(hwc)}, values


def write_shards(
    directory: str,
    images: Iterable[tuple[np.ndarray, int | None]],
    *,
    classes: Iterable[str] | None = None,
    per_shard: int = 10_000,
    source: str = "",
    latent: LatentInfo | None = None,
) -> Manifest:
    """Write `(pixels, label)` examples as PNG shards of `per_shard` examples plus the manifest.

    `pixels` are uint8 `(H, W)` (gray) or `(H, W, C)`; every image must have the first one's
    shape. With `latent`, they are float latents `(c, h, w)` instead, written as float16
    `.npy` members. Labels are ints (with `classes`) or None. `directory` is a path or fsspec URL;
    shards are named `shard-000000.tar`, ... The manifest is written last, so a directory
    with a manifest is complete. Members carry a fixed time stamp, so the same examples
    give the same bytes (and no per-member extended header).
    """
    from webdataset import TarWriter

    if per_shard < 1:
        raise DataError(f"per_shard must be at least 1, got {per_shard}")
    class_names = None if classes is None else tuple(classes)
    fs, root = fsspec.core.url_to_fs(directory)
    fs.makedirs(root, exist_ok=True)
    shards: list[str] = []
    counts: list[int] = []
    shape: tuple[int, int, int] | None = None
    totals = sums = squares = None
    writer = None
    try:
        for index, (pixels, label) in enumerate(images):
            chw, member, values = _encoded(index, pixels, latent)
            if shape is None:
                shape = chw
                totals, sums, squares = 0, np.zeros(chw[0]), np.zeros(chw[0])
            elif chw != shape:
                raise DataError(
                    f"example {index} is {chw[0]}x{chw[1]}x{chw[2]}, the first was {shape[0]}x{shape[1]}x{shape[2]}: "
                    "images of mixed sizes cannot share a shard set (resize them first)"
                )
            if (label is None) != (class_names is None):
                raise DataError(f"example {index}: a label is needed exactly when class names are given")
            if label is not None and not 0 <= label < len(class_names):
                raise DataError(f"example {index}: label {label} is not one of {len(class_names)} classes")
            if writer is None or counts[-1] == per_shard:
                _close(writer)
                shards.append(f"shard-{len(shards):06d}.tar")
                counts.append(0)
                writer = TarWriter(fs.open(posixpath.join(root, shards[-1]), "wb"), mtime=0)
            sample = {"__key__": f"{index:09d}", **member}
            if label is not None:
                sample["cls"] = str(int(label)).encode()
            writer.write(sample)
            counts[-1] += 1
            totals += values.shape[0]
            sums += values.sum(axis=0)
            squares += (values**2).sum(axis=0)
    finally:
        _close(writer)
    if shape is None:
        raise DataError("no examples to write")
    mean = sums / totals
    std = np.sqrt(np.maximum(squares / totals - mean**2, 0.0))
    manifest = Manifest(
        image_shape=shape,
        shards=shards,
        counts=counts,
        classes=class_names,
        mean=[round(float(m), 6) for m in mean],
        std=[round(float(s), 6) for s in std],
        source=source,
        latent=latent,
    )
    with fs.open(posixpath.join(root, MANIFEST), "w") as f:
        f.write(manifest.to_json())
    return manifest
