"""tools/make_shards.py: every input format round-trips exactly into shards; bad input fails clearly."""

import gzip
import importlib.util
import io
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest
from PIL import Image

from flowmap_components.datasets.shard_format import DataError, examples, join, read_manifest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "make_shards.py"
_spec = importlib.util.spec_from_file_location("make_shards", TOOL)
make_shards = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_shards)

RECORD = 1 + 3 * 32 * 32


def read_back(directory: str):
    """(manifest, pixels (N, C, H, W), labels) of a written shard directory, in order."""
    manifest = read_manifest(directory, what="test")
    pixels, labels = [], []
    for name in manifest.shards:
        for _, image, label in examples(join(directory, name), manifest):
            pixels.append(image)
            labels.append(label)
    return manifest, np.stack(pixels), labels


def check_split(directory: str, images: np.ndarray, labels, classes, counts=None) -> None:
    """The shards at `directory` hold exactly `images` (N, H, W[, C]) and `labels`, with numpy's mean and std."""
    chw = (images[..., None] if images.ndim == 3 else images).transpose(0, 3, 1, 2)
    manifest, pixels, found = read_back(directory)
    np.testing.assert_array_equal(pixels, chw)
    assert found == (list(labels) if labels is not None else [None] * len(images))
    assert manifest.image_shape == chw.shape[1:] and manifest.count == len(images)
    assert manifest.classes == (tuple(classes) if classes is not None else None)
    if counts is not None:
        assert manifest.counts == tuple(counts)
    scaled = chw.astype(np.float64) / 255
    np.testing.assert_allclose(manifest.mean, scaled.mean(axis=(0, 2, 3)), atol=1e-6)
    np.testing.assert_allclose(manifest.std, scaled.std(axis=(0, 2, 3)), atol=1e-6)


def run(*argv) -> None:
    """Run the tool in this process; it must succeed."""
    assert make_shards.main([str(arg) for arg in argv]) == 0


def error(*argv) -> str:
    """The DataError message of reading the source in `argv` (its format detected)."""
    with pytest.raises(DataError) as caught:
        make_shards.read_source(Path(argv[0]), "auto", Path(argv[1]) if len(argv) > 1 else None)
    return str(caught.value)


# IDX -----------------------------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """`array` as an IDX file of unsigned bytes, with `magic` in place of the right magic number if given."""
    magic = (0x0800 | array.ndim) if magic is None else magic
    return magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape) + array.tobytes()


def write_idx(directory: Path, prefix: str, images, labels, gz: bool, image_magic=None) -> None:
    """Write `<prefix>-images-idx3-ubyte` and `<prefix>-labels-idx1-ubyte` (gzipped when `gz`) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    for kind, array, magic in [("images-idx3", images, image_magic), ("labels-idx1", labels, None)]:
        data = idx_bytes(array, magic)
        name = f"{prefix}-{kind}-ubyte"
        (directory / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)


def idx_set(rng, count: int, shape=(6, 5)):
    """`count` random gray images and labels 0..9."""
    return rng.integers(0, 256, (count, *shape), dtype=np.uint8), rng.integers(0, 10, count, dtype=np.uint8)


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_fashion_mnist_idx_round_trip(tmp_path, gz, capsys):
    rng = np.random.default_rng(0)
    train, test = idx_set(rng, 7), idx_set(rng, 3)
    source = tmp_path / "fashion-mnist"
    write_idx(source, "train", *train, gz=gz)
    write_idx(source, "t10k", *test, gz=not gz)  # one split of each kind in the same directory
    run(source, tmp_path / "out", "--per-shard", 3)
    check_split(str(tmp_path / "out" / "train"), train[0], train[1], make_shards.FASHION_CLASSES, counts=(3, 3, 1))
    check_split(str(tmp_path / "out" / "test"), test[0], test[1], make_shards.FASHION_CLASSES, counts=(3,))
    printed = capsys.readouterr().out
    assert "train: 7 examples in 3 shard(s)" in printed and "test: 3 examples in 1 shard(s)" in printed
    assert "image 1x6x5" in printed and "10 classes: T-shirt/top, Trouser" in printed


def test_idx_elsewhere_is_mnist_with_digit_classes(tmp_path):
    rng = np.random.default_rng(1)
    train = idx_set(rng, 4)
    write_idx(tmp_path / "digits", "train", *train, gz=False)
    run(tmp_path / "digits", tmp_path / "out")
    assert not (tmp_path / "out" / "test").exists()
    check_split(str(tmp_path / "out" / "train"), train[0], train[1], [str(d) for d in range(10)], counts=(4,))
    run(tmp_path / "digits", tmp_path / "named", "--format", "fashion-mnist")
    assert read_manifest(str(tmp_path / "named" / "train"), what="test").classes == make_shards.FASHION_CLASSES


def test_idx_errors(tmp_path):
    rng = np.random.default_rng(2)
    images, labels = idx_set(rng, 5)
    write_idx(tmp_path / "magic", "train", images, labels, gz=True, image_magic=0x00000801)
    assert "magic number 0x00000801, expected 0x00000803" in error(tmp_path / "magic")
    write_idx(tmp_path / "counts", "train", images, labels[:4], gz=False)
    assert "holds 5 images but" in error(tmp_path / "counts") and "holds 4 labels" in error(tmp_path / "counts")
    write_idx(tmp_path / "short", "train", images, labels, gz=False)
    path = tmp_path / "short" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    assert "(166 bytes), but the file has 165" in error(tmp_path / "short")


# CIFAR-10 ------------------------------------------------------------------------------------------------------

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def cifar_batches(rng) -> dict[str, np.ndarray]:
    """Records (N, 3073) of a tiny CIFAR-10: 2 per train batch, 3 in the test batch."""
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    batches = {}
    for name in names:
        records = rng.integers(0, 256, (3 if name == "test_batch.bin" else 2, RECORD), dtype=np.uint8)
        records[:, 0] = rng.integers(0, 10, len(records))
        batches[name] = records
    return batches


def cifar_files(batches: dict[str, np.ndarray]) -> dict[str, bytes]:
    """The files of CIFAR-10's binary version holding `batches`, with the class names and a readme."""
    files = {name: records.tobytes() for name, records in batches.items()}
    files["batches.meta.txt"] = ("\n".join(CIFAR_CLASSES) + "\n\n").encode()
    files["readme.html"] = b"<html></html>"
    return files


def write_cifar_tar(path: Path, files: dict[str, bytes]) -> None:
    """A `.tar.gz` of `files` under `cifar-10-batches-bin/`, like the real archive."""
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def cifar_images(records: list[np.ndarray]):
    """The images (N, 32, 32, 3) and labels of CIFAR-10 records, decoded here independently of the tool."""
    data = np.concatenate(records)
    return data[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), data[:, 0].tolist()


@pytest.mark.parametrize("packed", [True, False], ids=["tar.gz", "folder"])
def test_cifar10_round_trip(tmp_path, packed):
    batches = cifar_batches(np.random.default_rng(3))
    files = cifar_files(batches)
    if packed:
        source = tmp_path / "cifar-10-binary.tar.gz"
        write_cifar_tar(source, files)
    else:
        source = tmp_path / "cifar-10-batches-bin"
        source.mkdir()
        for name, data in files.items():
            (source / name).write_bytes(data)
    run(source, tmp_path / "out", "--per-shard", 4)
    train = cifar_images([batches[f"data_batch_{i}.bin"] for i in range(1, 6)])
    check_split(str(tmp_path / "out" / "train"), *train, CIFAR_CLASSES, counts=(4, 4, 2))
    check_split(str(tmp_path / "out" / "test"), *cifar_images([batches["test_batch.bin"]]), CIFAR_CLASSES)


def test_cifar10_errors(tmp_path):
    files = cifar_files(cifar_batches(np.random.default_rng(4)))
    files["data_batch_3.bin"] += b"\0" * 5
    write_cifar_tar(tmp_path / "bad.tar.gz", files)
    message = error(tmp_path / "bad.tar.gz")
    assert "member cifar-10-batches-bin/data_batch_3.bin: 6151 bytes is not a whole" in message
    del files["data_batch_3.bin"], files["test_batch.bin"]
    write_cifar_tar(tmp_path / "short.tar.gz", files)
    assert "lacks the CIFAR-10 file(s) data_batch_3.bin, test_batch.bin" in error(tmp_path / "short.tar.gz")


# Image folders -------------------------------------------------------------------------------------------------


def save(path: Path, pixels: np.ndarray) -> None:
    """Write `pixels` as the image file `path`, losslessly in the format its suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, lossless=True)


def test_folder_round_trip_rgb_with_classes(tmp_path):
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (5, 4, 6, 3), dtype=np.uint8)
    layout = [("cat", "a.png"), ("cat", "b.bmp"), ("dog", "c.png"), ("dog", "deep/d.png"), ("zebra", "e.webp")]
    for (folder, name), pixels in zip(layout, images, strict=True):
        save(tmp_path / "src" / folder / name, pixels)
    (tmp_path / "src" / "dog" / "notes.txt").write_text("not an image")
    run(tmp_path / "src", tmp_path / "out", "--per-shard", 2)
    check_split(str(tmp_path / "out" / "train"), images, [0, 0, 1, 1, 2], ["cat", "dog", "zebra"], counts=(2, 2, 1))


def test_folder_gray_mixed_unlabelled_and_splits(tmp_path):
    rng = np.random.default_rng(6)
    gray = rng.integers(0, 256, (3, 5, 5), dtype=np.uint8)
    for index, pixels in enumerate(gray):
        save(tmp_path / "gray" / f"{index}.png", pixels)
    run(tmp_path / "gray", tmp_path / "out_gray")
    check_split(str(tmp_path / "out_gray" / "train"), gray, None, None)

    color = rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)
    save(tmp_path / "mixed" / "a" / "0.png", gray[0])
    save(tmp_path / "mixed" / "b" / "1.png", color)
    run(tmp_path / "mixed", tmp_path / "out_mixed")
    expected = np.stack([np.repeat(gray[0][..., None], 3, axis=2), color])
    check_split(str(tmp_path / "out_mixed" / "train"), expected, [0, 1], ["a", "b"])

    for split, pixels in [("train", gray[0]), ("train", gray[1]), ("test", gray[2])]:
        save(tmp_path / "split" / split / "shoe" / f"{pixels[0, 0]}-{split}.png", pixels)
    run(tmp_path / "split", tmp_path / "out_split")
    order = sorted([0, 1], key=lambda i: f"{gray[i][0, 0]}-train.png")
    check_split(str(tmp_path / "out_split" / "train"), gray[order], [0, 0], ["shoe"])
    check_split(str(tmp_path / "out_split" / "test"), gray[2:], [0], ["shoe"])


def test_folder_of_mixed_sizes_names_two_files(tmp_path):
    save(tmp_path / "src" / "a" / "big.png", np.zeros((8, 8, 3), np.uint8))
    save(tmp_path / "src" / "b" / "small.png", np.zeros((8, 6, 3), np.uint8))
    message = error(tmp_path / "src")
    assert "images of different sizes" in message and "big.png is 8x8" in message and "small.png is 6x8" in message


# Arrays --------------------------------------------------------------------------------------------------------


def test_npy_uint8_with_labels_file(tmp_path):
    rng = np.random.default_rng(7)
    images, labels = rng.integers(0, 256, (6, 4, 4), dtype=np.uint8), np.array([0, 3, 1, 3, 2, 0])
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "labels.npy", labels)
    run(tmp_path / "images.npy", tmp_path / "out", "--labels", tmp_path / "labels.npy")
    check_split(str(tmp_path / "out" / "train"), images, labels.tolist(), ["0", "1", "2", "3"])


def test_npy_float_is_scaled_and_rounded(tmp_path):
    images = np.random.default_rng(8).random((4, 3, 5, 3)).astype(np.float32)
    images[0, 0, 0] = [0.0, 1.0, 0.5 / 255]
    np.save(tmp_path / "images.npy", images)
    run(tmp_path / "images.npy", tmp_path / "out")
    check_split(str(tmp_path / "out" / "train"), np.rint(images * 255.0).astype(np.uint8), None, None)


def test_npz_layouts(tmp_path):
    rng = np.random.default_rng(9)
    images, labels = rng.integers(0, 256, (5, 3, 3, 1), dtype=np.uint8), np.array([1, 0, 1, 1, 0])
    np.savez(tmp_path / "named.npz", images=images, labels=labels, classes=np.array(["no", "yes"]))
    run(tmp_path / "named.npz", tmp_path / "named")
    check_split(str(tmp_path / "named" / "train"), images, labels.tolist(), ["no", "yes"])
    np.savez(tmp_path / "xy.npz", x=images[..., 0], y=labels)
    run(tmp_path / "xy.npz", tmp_path / "xy")
    check_split(str(tmp_path / "xy" / "train"), images[..., 0], labels.tolist(), ["0", "1"])
    np.savez(tmp_path / "keras.npz", x_train=images[:3], y_train=labels[:3], x_test=images[3:], y_test=labels[3:] + 1)
    run(tmp_path / "keras.npz", tmp_path / "keras")
    check_split(str(tmp_path / "keras" / "train"), images[:3], labels[:3].tolist(), ["0", "1", "2"])
    check_split(str(tmp_path / "keras" / "test"), images[3:], (labels[3:] + 1).tolist(), ["0", "1", "2"])


@pytest.mark.parametrize("bad", [1.5, -0.25, np.nan])
def test_float_array_outside_unit_range_is_refused(tmp_path, bad):
    images = np.full((2, 3, 3), 0.5)
    images[1, 2, 2] = bad
    np.save(tmp_path / "images.npy", images)
    assert "floats must lie in [0, 1]" in error(tmp_path / "images.npy")


def test_array_shape_and_dtype_errors(tmp_path):
    np.save(tmp_path / "chw.npy", np.zeros((2, 3, 8, 8), np.uint8))
    assert "channels first? move them last" in error(tmp_path / "chw.npy")
    np.save(tmp_path / "int.npy", np.zeros((2, 8, 8), np.int64))
    assert "pixels of dtype int64" in error(tmp_path / "int.npy")
    np.save(tmp_path / "images.npy", np.zeros((2, 8, 8), np.uint8))
    np.save(tmp_path / "labels.npy", np.zeros(3, np.int64))
    assert "labels of shape (3,) and dtype int64, expected 2 integers" in error(
        tmp_path / "images.npy", tmp_path / "labels.npy"
    )


# Shard counts, URLs, the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize(("per_shard", "counts"), [(1, (1,) * 10), (3, (3, 3, 3, 1)), (10, (10,)), (25, (10,))])
def test_per_shard_sets_the_shard_counts(tmp_path, per_shard, counts):
    np.save(tmp_path / "images.npy", np.zeros((10, 2, 2), np.uint8))
    run(tmp_path / "images.npy", tmp_path / "out", "--per-shard", per_shard)
    manifest = read_manifest(str(tmp_path / "out" / "train"), what="test")
    assert manifest.counts == counts and len(list((tmp_path / "out" / "train").glob("shard-*.tar"))) == len(counts)


def test_writes_to_a_memory_url(tmp_path):
    rng = np.random.default_rng(10)
    train, test = idx_set(rng, 5), idx_set(rng, 2)
    write_idx(tmp_path / "fashion", "train", *train, gz=True)
    write_idx(tmp_path / "fashion", "t10k", *test, gz=True)
    url = f"memory://make-shards-{uuid.uuid4().hex}"
    try:
        run(tmp_path / "fashion", url, "--per-shard", 2)
        check_split(f"{url}/train", train[0], train[1], make_shards.FASHION_CLASSES, counts=(2, 2, 1))
        check_split(f"{url}/test", test[0], test[1], make_shards.FASHION_CLASSES, counts=(2,))
    finally:
        fsspec.filesystem("memory").rm(url, recursive=True)


def test_refuses_a_split_directory_that_holds_files(tmp_path, capsys):
    np.save(tmp_path / "images.npy", np.zeros((3, 2, 2), np.uint8))
    run(tmp_path / "images.npy", tmp_path / "out")
    assert make_shards.main([str(tmp_path / "images.npy"), str(tmp_path / "out")]) == 2
    assert "already holds 2 file(s); remove it" in capsys.readouterr().err


def test_command_line_prints_one_error_line_and_exits_2(tmp_path):
    np.save(tmp_path / "images.npy", np.full((2, 3, 3), 2.0))
    done = subprocess.run(
        [sys.executable, str(TOOL), str(tmp_path / "images.npy"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("make_shards: error: ") and "floats must lie in [0, 1]" in lines[0]
    assert not (tmp_path / "out").exists()
