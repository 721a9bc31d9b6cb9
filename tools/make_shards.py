"""Write an image set as flowmap's webdataset shards, one directory per split, for `dataset.shards`.

    python tools/make_shards.py SOURCE OUT [--format auto|fashion-mnist|mnist|cifar10|folder|array]
                                [--per-shard 5000] [--labels FILE.npy]
                                [--encode VAE [--scale S] [--shift S] [--batch 64]]

With `--encode VAE` (a diffusers `AutoencoderKL` folder), each image is written as its VAE latent
(`components/datasets/latents.py`: the posterior mean, normalised by the VAE's scaling and shift
factors or `--scale` / `--shift`), and the manifest records the VAE's folder and weights hash; training
reads the latents as data and evaluation decodes samples through the same VAE before scoring.

e.g. `python tools/make_shards.py /usr/share/datasets/fashion-mnist data/fashion_mnist` (Debian's
`dataset-fashion-mnist` package). OUT is a path or fsspec URL; each split goes to `OUT/train/` and,
where the source has one, `OUT/test/` (the format of `components/datasets/shard_format.py`). Every
split directory must be new or empty, so shards of two runs never mix. SOURCE is one of (`--format
auto` tells them apart):

- `fashion-mnist` / `mnist`: a directory of IDX files `train-images-idx3-ubyte`,
  `train-labels-idx1-ubyte`, `t10k-...` (gzipped `.gz` or plain; `train-images.idx3-ubyte` also
  accepted). auto names the classes as Fashion-MNIST's when the directory or its parent has "fashion" in
  its name (`/usr/share/datasets/fashion-mnist`, torchvision's `FashionMNIST/raw`), else '0'..'9'.
- `cifar10`: CIFAR-10's binary version, `cifar-10-binary.tar.gz` or its extracted folder
  `cifar-10-batches-bin/`: `data_batch_1..5.bin` -> train, `test_batch.bin` -> test, class names
  from `batches.meta.txt`. The archive is read as a stream; nothing is extracted or unpickled.
- `folder`: `SOURCE/<class>/<images>` (any format Pillow opens, in subfolders too), classes the
  sorted folder names; images straight in SOURCE are unlabelled. `SOURCE/train/` and `SOURCE/test/`,
  each such a folder, give the two splits. All images must have one size (none is resized); they
  become gray when all are gray (modes 1, L, LA), RGB otherwise (alpha dropped).
- `array`: a `.npy` of images `(N, H, W)` or `(N, H, W, C)`, C = 1 or 3, uint8 or float in [0, 1]
  (scaled by 255 and rounded), with labels from `--labels FILE.npy`; or a `.npz` holding `images`
  (or `x`), optionally `labels` (or `y`) and `classes`, or Keras's `x_train, y_train, x_test,
  y_test`. Unnamed labels get classes '0'..max.

The default `--per-shard` of 5000 makes 12 train and 2 test shards of Fashion-MNIST (60k / 10k): a
training run with R processes x W loader workers needs at least R x W shards, and 12 spread evenly
over 1, 2, 3, 4, 6 or 12 readers. Per split it prints the examples, shards, image shape, classes and
per-channel mean / std (of pixels in [0, 1]) of the written manifest.
"""

import argparse
import gzip
import itertools
import posixpath
import re
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import fsspec
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from flowmap_components.datasets import latents
from flowmap_components.datasets.shard_format import DataError, LatentInfo, Manifest, join, write_shards
from flowmap_core.errors import FlowmapError

FORMATS = ("auto", "fashion-mnist", "mnist", "cifar10", "folder", "array")
PER_SHARD = 5000
SPLITS = ("train", "test")
SHOWN_CLASSES = 20

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGIT_CLASSES = tuple(str(digit) for digit in range(10))
IDX_IMAGES, IDX_LABELS = 0x00000803, 0x00000801
"""IDX magic numbers: unsigned bytes (0x08) in 3 dimensions (images) or 1 (labels)."""
IDX_PREFIX = {"train": "train", "test": "t10k"}
IDX_NAME = re.compile(r"^(train|t10k)-images[-.]idx3-ubyte(\.gz)?$")

CIFAR_RECORD = 1 + 3 * 32 * 32
"""Bytes of one CIFAR-10 record: the label, then 1024 red, 1024 green, 1024 blue bytes (row-major 32x32)."""
CIFAR_FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
CIFAR_META = "batches.meta.txt"
CIFAR_META_LIMIT = 1 << 16

GRAY_MODES = {"1", "L", "LA", "La"}
DEEP_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


@attrs.frozen(kw_only=True)
class Split:
    """One split of a source: `count` examples `(uint8 pixels (H, W) or (H, W, C), label or None)`,
    yielded in order by `images()`, with `classes` naming the labels (None when unlabelled)."""

    name: str
    count: int
    classes: tuple[str, ...] | None
    images: Callable[[], Iterator[tuple[np.ndarray, int | None]]]
    source: str


def note(message: str) -> None:
    """Tell the user something worth knowing that is not an error (on stderr)."""
    print(f"make_shards: note: {message}", file=sys.stderr)


def detect(source: Path) -> str:
    """The format of `source`: an array by its suffix, a tar archive by its content, a directory by its file names."""
    if source.is_file():
        if source.suffix in (".npy", ".npz"):
            return "array"
        if tarfile.is_tarfile(source):
            return "cifar10"
        raise DataError(f"{source}: a file that is neither a .npy / .npz array nor a tar archive (CIFAR-10)")
    names = {path.name for path in source.iterdir()}
    if any(name in names for name in (*CIFAR_FILES["train"], *CIFAR_FILES["test"])):
        return "cifar10"
    if any(IDX_NAME.match(name) for name in names):
        return "fashion-mnist" if "fashion" in "/".join(source.resolve().parts[-2:]).lower() else "mnist"
    return "folder"


def read_source(source: Path, kind: str, labels: Path | None) -> list[Split]:
    """The splits of `source` read as `kind` ("auto" to detect it); `labels` only for a `.npy`."""
    if not source.exists():
        raise DataError(f"{source} does not exist")
    if kind == "auto":
        kind = detect(source)
    if labels is not None and kind != "array":
        raise DataError(f"--labels is for a .npy image array, but {source} is read as {kind}")
    if kind in ("fashion-mnist", "mnist"):
        return idx_splits(source, FASHION_CLASSES if kind == "fashion-mnist" else DIGIT_CLASSES, kind)
    if kind == "cifar10":
        return cifar_splits(source)
    if kind == "folder":
        return folder_splits(source)
    return array_splits(source, labels)


# IDX (MNIST, Fashion-MNIST) ------------------------------------------------------------------------------------


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array of the IDX file `path` (gzipped or plain), whose magic number must be `magic`."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise DataError(f"{path}: a broken gzip file ({error})") from None
    ndim = magic & 0xFF
    what = "images" if magic == IDX_IMAGES else "labels"
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic:
        shown = "none (the file is too short)" if found is None else f"0x{found:08x}"
        raise DataError(
            f"{path}: IDX magic number {shown}, expected 0x{magic:08x} ({what}: unsigned bytes in {ndim} dimension(s))"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: the IDX header is cut short ({len(data)} bytes)")
    shape = tuple(int(n) for n in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    size = header + int(np.prod(shape))
    if len(data) != size:
        raise DataError(f"{path}: the header says {what} of shape {shape} ({size} bytes), but the file has {len(data)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def idx_file(directory: Path, prefix: str, kind: str, ndim: int) -> Path | None:
    """The IDX file `<prefix>-<kind>-idx<ndim>-ubyte` (or `.idx<ndim>-`, plain or `.gz`) in `directory`, if any."""
    for separator in ("-", "."):
        for suffix in ("", ".gz"):
            path = directory / f"{prefix}-{kind}{separator}idx{ndim}-ubyte{suffix}"
            if path.is_file():
                return path
    return None


def idx_splits(directory: Path, classes: tuple[str, ...], kind: str) -> list[Split]:
    """The train (`train-*`) and test (`t10k-*`) splits of a directory of MNIST-style IDX files."""
    splits = []
    for split, prefix in IDX_PREFIX.items():
        images_path = idx_file(directory, prefix, "images", 3)
        if images_path is None:
            continue
        labels_path = idx_file(directory, prefix, "labels", 1)
        if labels_path is None:
            raise DataError(f"{images_path} has no labels file beside it ({prefix}-labels-idx1-ubyte[.gz])")
        images, labels = read_idx(images_path, IDX_IMAGES), read_idx(labels_path, IDX_LABELS)
        if len(images) != len(labels):
            raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
        if len(labels) and labels.max() >= len(classes):
            raise DataError(f"{labels_path}: label {labels.max()} is not one of the {len(classes)} {kind} classes")
        splits.append(
            Split(
                name=split,
                count=len(images),
                classes=classes,
                images=lambda images=images, labels=labels: zip(images, map(int, labels), strict=True),
                source=f"{kind} {images_path}",
            )
        )
    if not splits:
        raise DataError(f"{directory} holds no IDX image files (train-images-idx3-ubyte[.gz], t10k-...)")
    return splits


# CIFAR-10 binary -----------------------------------------------------------------------------------------------


def check_cifar_size(where: str, name: str, size: int) -> None:
    """Refuse a CIFAR-10 file whose `size` is not what its `name` holds."""
    if name == CIFAR_META:
        if size > CIFAR_META_LIMIT:
            raise DataError(f"{where}: {size} bytes, too large for a list of class names")
    elif size == 0 or size % CIFAR_RECORD:
        raise DataError(
            f"{where}: {size} bytes is not a whole, positive number of {CIFAR_RECORD}-byte CIFAR-10 records "
            "(1 label byte + 3072 pixel bytes); is this CIFAR-10's binary version?"
        )


def cifar_files(source: Path) -> dict[str, bytes]:
    """The bytes of the CIFAR-10 files by name, from the tar archive or the folder `source`."""
    wanted = {*CIFAR_FILES["train"], *CIFAR_FILES["test"], CIFAR_META}
    found: dict[str, bytes] = {}
    if source.is_dir():
        for name in sorted(wanted):
            path = source / name
            if path.is_file():
                check_cifar_size(str(path), name, path.stat().st_size)
                found[name] = path.read_bytes()
    else:
        try:
            with tarfile.open(source, "r|*") as archive:
                for member in archive:
                    name = posixpath.basename(member.name)
                    if name not in wanted:
                        continue
                    where = f"{source}, member {member.name}"
                    if not member.isfile():
                        raise DataError(f"{where}: not a regular file")
                    if name in found:
                        raise DataError(f"{where}: a second {name} in the archive")
                    check_cifar_size(where, name, member.size)
                    found[name] = archive.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as error:
            raise DataError(f"{source}: not a readable tar archive ({type(error).__name__}: {error})") from None
    missing = sorted(wanted - set(found))
    if missing:
        raise DataError(f"{source} lacks the CIFAR-10 file(s) {', '.join(missing)}")
    return found


def cifar_splits(source: Path) -> list[Split]:
    """The train and test splits of CIFAR-10's binary version (`.tar.gz` or extracted folder)."""
    files = cifar_files(source)
    classes = tuple(line.strip() for line in files[CIFAR_META].decode("utf-8", "replace").splitlines() if line.strip())
    splits = []
    for split, names in CIFAR_FILES.items():
        records = [np.frombuffer(files[name], dtype=np.uint8).reshape(-1, CIFAR_RECORD) for name in names]
        for name, batch in zip(names, records, strict=True):
            if batch[:, 0].max() >= len(classes):
                row = int(np.argmax(batch[:, 0] >= len(classes)))
                raise DataError(
                    f"{source}: {name}, record {row}: label {batch[row, 0]}, but {CIFAR_META} names {len(classes)} "
                    "classes"
                )
        splits.append(
            Split(
                name=split,
                count=sum(len(batch) for batch in records),
                classes=classes,
                images=lambda records=records: cifar_examples(records),
                source=f"cifar10 {source}",
            )
        )
    return splits


def cifar_examples(batches: list[np.ndarray]) -> Iterator[tuple[np.ndarray, int]]:
    """(pixels (32, 32, 3), label) of each CIFAR-10 record (a row of 3073 bytes) of each batch, in order."""
    for batch in batches:
        for record in batch:
            yield np.ascontiguousarray(record[1:].reshape(3, 32, 32).transpose(1, 2, 0)), int(record[0])


# Image folders -------------------------------------------------------------------------------------------------


def image_suffixes() -> set[str]:
    """The file suffixes of the image formats Pillow can open (".png", ".jpg", ".webp", ...)."""
    return {suffix for suffix, format in Image.registered_extensions().items() if format in Image.OPEN}


def folder_splits(source: Path) -> list[Split]:
    """The splits of an image folder: `train/` and `test/` when SOURCE holds just those, else one."""
    folders = sorted(path.name for path in source.iterdir() if path.is_dir() and not path.name.startswith("."))
    if set(folders) == set(SPLITS):
        splits = [folder_split(name, source / name) for name in SPLITS]
        if splits[0].classes != splits[1].classes:
            raise DataError(
                f"{source}: train/ and test/ have different class folders: {splits[0].classes} and {splits[1].classes}"
            )
        return splits
    return [folder_split("train", source)]


def folder_split(name: str, root: Path) -> Split:
    """The images of `root/<class>/...` (labelled) or straight in `root` (unlabelled) as the split `name`."""
    suffixes = image_suffixes()
    entries = sorted(path for path in root.iterdir() if not path.name.startswith("."))
    folders = [path for path in entries if path.is_dir()]
    loose = [path for path in entries if path.is_file() and path.suffix.lower() in suffixes]
    if folders and loose:
        raise DataError(
            f"{root} holds both images ({loose[0].name}, ...) and class folders ({folders[0].name}, ...): "
            "put every image in its class folder, or all of them straight in the folder for an unlabelled set"
        )
    ignored = [path for path in entries if path.is_file() and path.suffix.lower() not in suffixes]
    files: list[tuple[Path, int | None]] = [(path, None) for path in loose]
    for label, folder in enumerate(folders):
        inside = sorted(
            path
            for path in folder.rglob("*")
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        )
        images = [path for path in inside if path.suffix.lower() in suffixes]
        ignored += [path for path in inside if path.suffix.lower() not in suffixes]
        if not images:
            raise DataError(f"class folder {folder} holds no images (suffixes {', '.join(sorted(suffixes)[:8])}, ...)")
        files += [(path, label) for path in images]
    if ignored:
        note(f"ignored {len(ignored)} file(s) in {root} that are not images, e.g. {ignored[0]}")
    if not files:
        raise DataError(f"{root} holds no images and no class folders")
    mode = folder_mode(files)
    return Split(
        name=name,
        count=len(files),
        classes=tuple(folder.name for folder in folders) if folders else None,
        images=lambda: folder_examples(files, mode),
        source=f"folder {root}",
    )


def folder_mode(files: list[tuple[Path, int | None]]) -> str:
    """The mode to convert to, "L" when every image is gray, else "RGB", once the headers show one size for all."""
    first, size, modes = None, None, set()
    for path, _ in files:
        try:
            with Image.open(path) as image:
                image_size, mode = image.size, image.mode
        except (UnidentifiedImageError, OSError) as error:
            raise DataError(f"{path}: not a readable image ({type(error).__name__}: {error})") from None
        if first is None:
            first, size = path, image_size
        elif image_size != size:
            raise DataError(
                f"images of different sizes: {first} is {size[0]}x{size[1]}, {path} is {image_size[0]}x{image_size[1]} "
                "(width x height); one shard set holds one size, so resize or crop them first"
            )
        if mode in DEEP_MODES:
            raise DataError(f"{path}: {mode} pixels (16-bit or float); convert the images to 8-bit first")
        modes.add(mode)
    return "L" if modes <= GRAY_MODES else "RGB"


def folder_examples(files: list[tuple[Path, int | None]], mode: str) -> Iterator[tuple[np.ndarray, int | None]]:
    """(pixels in `mode`, label) of each image file, in order."""
    for path, label in files:
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert(mode))
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise DataError(f"{path}: cannot read it as {mode} ({type(error).__name__}: {error})") from None
        yield pixels, label


# Arrays --------------------------------------------------------------------------------------------------------


def load_array(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    """The array of a `.npy` (memory-mapped) or the arrays of a `.npz`, never unpickling."""
    try:
        if path.suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a loadable numpy array file ({type(error).__name__}: {error})") from None


def check_images(images: np.ndarray, where: str) -> None:
    """Refuse an image array that is not `(N, H, W)` / `(N, H, W, 1 or 3)` uint8, or float in [0, 1]."""
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)) or not len(images):
        channels_first = images.ndim == 4 and images.shape[1] in (1, 3)
        hint = "; channels first? move them last: x.transpose(0, 2, 3, 1)" if channels_first else ""
        raise DataError(f"{where}: images of shape {images.shape}, expected (N, H, W) or (N, H, W, C), C 1 or 3{hint}")
    if np.issubdtype(images.dtype, np.floating):
        chunk = max(1, (1 << 24) // max(1, images[0].size))
        low = min(float(np.min(images[i : i + chunk])) for i in range(0, len(images), chunk))
        high = max(float(np.max(images[i : i + chunk])) for i in range(0, len(images), chunk))
        if not (0 <= low and high <= 1):
            raise DataError(
                f"{where}: float pixels from {low} to {high}; floats must lie in [0, 1] (they are scaled by 255), "
                "else pass uint8 pixels in [0, 255]"
            )
    elif images.dtype != np.uint8:
        raise DataError(f"{where}: pixels of dtype {images.dtype}; expected uint8 in [0, 255] or floats in [0, 1]")


def check_labels(labels: np.ndarray, count: int, where: str) -> None:
    """Refuse labels that are not `count` non-negative integers."""
    if labels.ndim != 1 or len(labels) != count or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels of shape {labels.shape} and dtype {labels.dtype}, expected {count} integers")
    if labels.min() < 0:
        raise DataError(f"{where}: a negative label ({labels.min()})")


def array_examples(images: np.ndarray, labels: np.ndarray | None) -> Iterator[tuple[np.ndarray, int | None]]:
    """(uint8 pixels, label) of each image of a checked array; floats are scaled by 255 and rounded."""
    for index, pixels in enumerate(images):
        if pixels.dtype != np.uint8:
            pixels = np.rint(pixels * 255.0).astype(np.uint8)
        yield np.asarray(pixels), None if labels is None else int(labels[index])


def pick(arrays: dict[str, np.ndarray], names: tuple[str, ...]) -> str | None:
    """The first of `names` that `arrays` holds, if any."""
    return next((name for name in names if name in arrays), None)


def array_splits(path: Path, labels_path: Path | None) -> list[Split]:
    """The splits of a `.npy` (with `--labels`) or `.npz` image array."""
    loaded = load_array(path)
    arrays = {"images": loaded} if isinstance(loaded, np.ndarray) else loaded
    if labels_path is not None:
        if "x_train" in arrays or pick(arrays, ("labels", "y")):
            raise DataError(f"--labels gives labels to one image array, but {path} holds labels or splits already")
        labels = load_array(labels_path)
        if not isinstance(labels, np.ndarray):
            raise DataError(f"--labels {labels_path}: expected a .npy file")
        arrays["labels"] = labels
    if "x_train" in arrays:
        keys = {split: (f"x_{split}", f"y_{split}") for split in SPLITS if f"x_{split}" in arrays}
    else:
        images_key = pick(arrays, ("images", "x"))
        if images_key is None:
            raise DataError(f"{path} holds {sorted(arrays)}, but no 'images' (or 'x', or 'x_train') array")
        keys = {"train": (images_key, pick(arrays, ("labels", "y")))}
    found = {}
    for split, (images_key, labels_key) in keys.items():
        images, labels = arrays[images_key], arrays.get(labels_key)
        check_images(images, f"{path} [{images_key}]")
        if labels is not None:
            check_labels(labels, len(images), f"{labels_path or path} [{labels_key}]")
        found[split] = (images, labels)
    labelled = [labels is not None for _, labels in found.values()]
    if any(labelled) and not all(labelled):
        raise DataError(f"{path}: one split has labels and another has none")
    classes = array_classes(arrays, [labels for _, labels in found.values() if labels is not None], path)
    return [
        Split(
            name=split,
            count=len(images),
            classes=classes,
            images=lambda images=images, labels=labels: array_examples(images, labels),
            source=f"array {path}",
        )
        for split, (images, labels) in found.items()
    ]


def array_classes(arrays: dict[str, np.ndarray], labels: list[np.ndarray], path: Path) -> tuple[str, ...] | None:
    """The class names of labelled arrays: the `classes` array, else '0'..str(max label)."""
    if not labels:
        return None
    top = max(int(values.max()) for values in labels)
    if "classes" not in arrays:
        return tuple(str(label) for label in range(top + 1))
    names = arrays["classes"]
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise DataError(f"{path} [classes]: expected a 1-d array of strings, got {names.dtype} {names.shape}")
    classes = tuple(name.decode() if isinstance(name, bytes) else str(name) for name in names.tolist())
    if top >= len(classes):
        raise DataError(f"{path}: label {top}, but [classes] names only {len(classes)} classes")
    return classes


# Writing -------------------------------------------------------------------------------------------------------


def check_unused(url: str) -> None:
    """Refuse to write into a split directory that already holds files."""
    try:
        fs, root = fsspec.core.url_to_fs(url)
        held = fs.ls(root, detail=False) if fs.exists(root) else []
    except Exception as error:  # an unknown protocol, a missing bucket, no credentials, ...
        raise DataError(f"cannot open {url!r}: {type(error).__name__}: {error}") from None
    if held:
        raise DataError(
            f"{url} already holds {len(held)} file(s); remove it or choose another OUT, so shards of two runs never mix"
        )


def write_split(split: Split, url: str, per_shard: int, encoder: "Encoder | None" = None) -> Manifest:
    """Write `split` as shards at `url` (as latents with `encoder`), with a progress bar, and return its manifest."""
    progress = tqdm(split.images(), total=split.count, desc=split.name, unit="img", mininterval=1, file=sys.stderr)
    with progress:
        examples, latent = progress, None
        if encoder is not None:
            first = next(iter(progress), None)
            if first is not None:
                latent = encoder.info(first[0])
                examples = encoder.latents(itertools.chain([first], progress))
        return write_shards(
            url, examples, classes=split.classes, per_shard=per_shard, source=split.source, latent=latent
        )


@attrs.define
class Encoder:
    """A VAE folder's `AutoencoderKL` turning images into normalised latents, `batch` at a time."""

    codec: latents.Codec
    folder: Path
    batch: int

    @classmethod
    def of(cls, folder: Path, batch: int, scale: float | None, shift: float | None) -> "Encoder":
        return cls(codec=latents.Codec.of(folder, scale, shift), folder=folder, batch=batch)

    def info(self, pixels: np.ndarray) -> LatentInfo:
        """What the manifest records of this VAE, for images shaped like `pixels` (H, W) or (H, W, C)."""
        height, width = pixels.shape[:2]
        return LatentInfo(
            vae=str(self.folder.resolve()),
            vae_sha256=latents.weights_hash(self.folder),
            scale=self.codec.scale,
            shift=self.codec.shift,
            image_shape=(1 if pixels.ndim == 2 else pixels.shape[2], height, width),
        )

    def latents(self, images: Iterator[tuple[np.ndarray, int | None]]) -> Iterator[tuple[np.ndarray, int | None]]:
        """(latent (c, h, w) float32, label) of each (uint8 image, label), in order."""
        held: list[tuple[np.ndarray, int | None]] = []
        for item in images:
            held.append(item)
            if len(held) == self.batch:
                yield from self._encode(held)
                held = []
        yield from self._encode(held)

    def _encode(self, held: list[tuple[np.ndarray, int | None]]) -> Iterator[tuple[np.ndarray, int | None]]:
        if not held:
            return
        pixels = np.stack([p[..., None] if p.ndim == 2 else p for p, _ in held]).transpose(0, 3, 1, 2)
        z = self.codec.encode(torch.from_numpy(pixels).float() / 127.5 - 1).float().numpy()
        yield from zip(z, (label for _, label in held), strict=True)


def summary(split: str, url: str, manifest: Manifest) -> str:
    """What was written: examples, shards, image shape, classes, per-channel mean and std."""
    channels, height, width = manifest.image_shape
    what, values = ("image", "pixels in [0, 1]") if manifest.latent is None else ("latent", "normalised latents")
    if manifest.classes is None:
        classes = "unlabelled"
    else:
        shown = manifest.classes[:SHOWN_CLASSES] + (("...",) if len(manifest.classes) > SHOWN_CLASSES else ())
        classes = f"{len(manifest.classes)} classes: {', '.join(shown)}"
    return "\n".join(
        [
            f"{split}: {manifest.count} examples in {len(manifest.shards)} shard(s) of at most {max(manifest.counts)}"
            f" -> {url}",
            f"  {what} {channels}x{height}x{width} (C x H x W), {classes}",
            f"  mean {' '.join(f'{m:.6f}' for m in manifest.mean)}   std {' '.join(f'{s:.6f}' for s in manifest.std)}"
            f"   (per channel, {values})",
        ]
    )


def parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="make_shards",
        description="Write an image set (Fashion-MNIST / MNIST IDX, CIFAR-10 binary, an image folder, a .npy / .npz "
        "array) as flowmap's webdataset shards, one directory per split under OUT.",
    )
    parser.add_argument("source", metavar="SOURCE", type=Path, help="the image set (a directory or a file)")
    parser.add_argument("out", metavar="OUT", help="where the split directories go: a path or fsspec URL")
    parser.add_argument("--format", choices=FORMATS, default="auto", help="the kind of SOURCE (default: detect it)")
    parser.add_argument(
        "--per-shard", type=int, default=PER_SHARD, metavar="N", help=f"examples per shard (default {PER_SHARD})"
    )
    parser.add_argument("--labels", type=Path, metavar="FILE", help="a .npy of integer labels for a .npy SOURCE")
    parser.add_argument(
        "--encode",
        type=Path,
        metavar="VAE",
        help="write latents instead: a diffusers AutoencoderKL folder (needs the 'pretrained' extra)",
    )
    parser.add_argument("--scale", type=float, help="latent scale (default: the VAE's scaling_factor)")
    parser.add_argument("--shift", type=float, help="latent shift (default: the VAE's shift_factor, or 0)")
    parser.add_argument("--batch", type=int, default=64, help="images per encoder call (default 64)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; errors in the input are printed as one line, with exit status 2."""
    args = parser().parse_args(argv)
    try:
        if args.per_shard < 1:
            raise DataError(f"--per-shard must be at least 1, got {args.per_shard}")
        splits = read_source(args.source, args.format, args.labels)
        urls = {split.name: join(args.out, split.name) for split in splits}
        for url in urls.values():
            check_unused(url)
        encoder = None if args.encode is None else Encoder.of(args.encode, args.batch, args.scale, args.shift)
        for split in splits:
            manifest = write_split(split, urls[split.name], args.per_shard, encoder)
            print(summary(split.name, urls[split.name], manifest), flush=True)
    except (FlowmapError, OSError) as error:
        print(f"make_shards: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
