"""Synthetic labelled images for smoke runs and benchmarks: Gaussian blobs placed by class.

Nothing is downloaded: `write_synthetic(OUT, (C, H, W))` writes `OUT/train/` and
`OUT/test/` in the shard format of `dataset.shards`, so every image config has a
seconds-long smoke version that runs anywhere (`gin/smoke/*`).
"""

from collections.abc import Iterator

import numpy as np

from flowmap_components.datasets.shard_format import Manifest, write_shards


def blob_images(
    count: int, image_shape: tuple[int, int, int], num_classes: int = 10, seed: int = 0
) -> Iterator[tuple[np.ndarray, int]]:
    """`count` uint8 images `(H, W, C)` with labels `i % num_classes`: one to three Gaussian
    blobs each, centred near a point on a circle set by the label, in a colour set by the
    label (RGB), so a classifier can tell the classes apart."""
    channels, height, width = image_shape
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(np.arange(height) / height, np.arange(width) / width, indexing="ij")
    for index in range(count):
        label = index % num_classes
        angle = 2 * np.pi * label / num_classes
        image = np.zeros((height, width))
        for _ in range(1 + rng.integers(3)):
            centre = 0.5 + 0.3 * np.array([np.sin(angle), np.cos(angle)]) + rng.normal(0, 0.05, 2)
            width_ = rng.uniform(0.06, 0.14)
            image += np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * width_**2))
        image /= image.max()
        colour = 0.4 + 0.6 * np.abs(np.cos(angle + np.arange(channels) * 2 * np.pi / 3))
        yield (255 * image[..., None] * colour).round().astype(np.uint8), label


def write_synthetic(
    out: str,
    image_shape: tuple[int, int, int],
    *,
    train: int = 512,
    test: int = 256,
    num_classes: int = 10,
    per_shard: int = 64,
) -> tuple[Manifest, Manifest]:
    """Write blob images as `out/train/` and `out/test/` shard directories (different seeds)."""
    classes = [f"blob {k}" for k in range(num_classes)]
    manifests = []
    for split, count, seed in [("train", train, 0), ("test", test, 1)]:
        images = blob_images(count, image_shape, num_classes, seed)
        manifests.append(write_shards(f"{out}/{split}", images, classes=classes, per_shard=per_shard, source="blobs"))
    return manifests[0], manifests[1]
