"""Latent shards: `make_shards.py --encode VAE` writes a tiny random AutoencoderKL's latents with
the VAE recorded in the manifest; they read back as the latents written, decode through the
same VAE, train a flow map, and `flowmap eval` scores decoded images (never latents)."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import AutoencoderKL  # noqa: E402

from flowmap_components.datasets import latents  # noqa: E402
from flowmap_components.datasets.shard_format import DataError  # noqa: E402
from flowmap_components.datasets.shards import Shards  # noqa: E402
from flowmap_core import cli, config  # noqa: E402
from flowmap_core.scores import Scores  # noqa: E402
from tests.tools.test_make_shards import run  # noqa: E402


@pytest.fixture(scope="module")
def latent_shards(tmp_path_factory):
    """A tiny VAE (1x28x28 images <-> 4x14x14 latents) and its latent shards of 40 random images."""
    root = tmp_path_factory.mktemp("latents")
    torch.manual_seed(0)
    AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 8),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=28,
        scaling_factor=0.5,
    ).save_pretrained(root / "vae")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=60)
    np.savez(root / "images.npz", x_train=images[:40], y_train=labels[:40], x_test=images[40:], y_test=labels[40:])
    run(root / "images.npz", root / "shards", "--encode", root / "vae", "--per-shard", "10")
    return root, images


def test_the_manifest_records_the_vae_and_the_latents_read_back(latent_shards):
    root, images = latent_shards
    manifest = json.loads((root / "shards" / "train" / "manifest.json").read_text())
    info = manifest["latent"]
    assert manifest["image_shape"] == [4, 14, 14] and info["image_shape"] == [1, 28, 28]
    assert info["vae_sha256"] == latents.weights_hash(root / "vae") and info["scale"] == 0.5 and info["shift"] == 0.0
    codec = latents.Codec.of(root / "vae")
    pixels = torch.from_numpy(images[:40, None]).float() / 127.5 - 1
    written = codec.encode(pixels)
    shards = Shards(url=str(root / "shards" / "train"))
    assert shards.data_shape == (4, 14, 14)
    read = shards.read().x1
    torch.testing.assert_close(read, written, rtol=2e-3, atol=2e-3)  # stored as float16
    decoded = shards.images().read(8).x1
    assert decoded.shape == (8, 1, 28, 28)
    torch.testing.assert_close(decoded, codec.decode(read[:8]), rtol=1e-5, atol=1e-5)


def test_a_different_vae_is_refused(latent_shards, tmp_path):
    root, _ = latent_shards
    other = AutoencoderKL.from_pretrained(root / "vae")
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(DataError, match="is not the one the latents were written with"):
        Shards(url=str(root / "shards" / "train"), vae=str(tmp_path / "other")).images()


def test_train_and_eval_score_decoded_images(latent_shards, smoke_data, tmp_path, capsys):
    root, _ = latent_shards
    smoke = str(config.GIN_DIR / "smoke" / "fashion_mnist_dit_lsd.gin")
    bindings = [
        f"dataset.shards.url = '{root / 'shards' / 'train'}'",
        f"real/dataset.shards.url = '{root / 'shards' / 'test'}'",
        "features.classifier.weights = 'runs/smoke_data/gray28/feature_net'",
        "backbone.dit.patch = 2",
        "train.steps = 2",
        "evaluate.num_samples = 16",
        "evaluate.plot_samples = 4",
    ]
    run_dir = tmp_path / "run"
    argv = ["train", smoke, "--run-dir", str(run_dir), "--no-progress"]
    assert cli.main(argv + [a for b in bindings for a in ("--gin", b)]) == 0, capsys.readouterr().err
    scores = Scores.loads((run_dir / "scores.json").read_text())
    table = scores.tables[0]
    assert table.metric == "fd_classifier" and np.isfinite(table.rows[0].values).all()
    card = table.card  # scored on decoded images, against the decoded training split
    assert card.features == "classifier" and len(card.features_sha256) == 64 and card.quantised
    assert card.reference.startswith(f"{root / 'shards' / 'train'} (latents decoded by the VAE")
    assert len(card.reference_sha256) == 64
    assert cli.main(["eval", str(run_dir)]) == 0
    out = tmp_path / "samples.npy"
    assert cli.main(["sample", str(run_dir), "--steps", "1", "--n", "3", "--out", str(out)]) == 0
    assert np.load(out).shape == (3, 1, 28, 28)
