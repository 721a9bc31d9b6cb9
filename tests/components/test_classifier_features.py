"""The data set's own classifier as a feature extractor: trained by tools/train_feature_net.py
on synthetic labelled images, saved, cached, loaded as `features.classifier`, and checked."""

import os
import sys
from pathlib import Path

import pytest
import torch

from flowmap_components.features.classifier import CONFIG, WEIGHTS, ClassifierFeatures
from flowmap_components.metrics.frechet import FrechetDistance
from flowmap_core import registry
from flowmap_core.protocols import Batch, FeatureExtractor

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import train_feature_net as tool  # noqa: E402

SHAPE = (1, 8, 8)
TINY = tool.Settings(epochs=3, batch=32, widths=(4, 8), dim=6, lr=1e-2)


def squares(n: int, seed: int) -> Batch:
    """Dark images (label 0) and images with a bright 4x4 square at a random place (label 1)."""
    g = torch.Generator().manual_seed(seed)
    label = torch.arange(n) % 2
    x = -0.8 + 0.1 * torch.randn(n, *SHAPE, generator=g)
    corners = torch.randint(0, 5, (n, 2), generator=g)
    for i in torch.nonzero(label).flatten().tolist():
        r, c = corners[i].tolist()
        x[i, :, r : r + 4, c : c + 4] = 0.8
    return Batch(x1=x.clamp(-1, 1), label=label)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny classifier, trained once on one thread (a second thread only adds contention at this size)."""
    out = tmp_path_factory.mktemp("feature_net") / "net"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return tool.build_feature_net(
            squares(512, 0),
            squares(128, 1),
            classes=["dark", "bright"],
            data_hash="squares",
            settings=TINY,
            out=str(out),
            progress=False,
            log=lambda _: None,
        )
    finally:
        torch.set_num_threads(threads)


def test_the_tool_trains_tests_and_writes_the_directory(trained):
    assert trained.trained
    assert {CONFIG, WEIGHTS} <= set(os.listdir(trained.directory))
    config = trained.config
    assert config["image_shape"] == list(SHAPE) and config["classes"] == ["dark", "bright"]
    assert config["test_accuracy"] > 0.9, "bright squares against dark images are easy"
    assert config["noise_floor"]["n"] == 128 and config["noise_floor"]["fd"] >= 0
    assert config["data_hash"] == "squares" and config["cache_key"] == tool.cache_key("squares", TINY)


def test_the_component_reproduces_the_saved_network(trained):
    features = registry.build("features", "classifier", weights=trained.directory)
    assert isinstance(features, FeatureExtractor)
    assert features.name == "classifier" and features.dim == 6
    assert features.test_accuracy == trained.config["test_accuracy"]
    images = squares(40, 2).x1
    out = features(images)
    assert out.shape == (40, 6) and out.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(out, trained.network.features(images), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(features.logits(images), trained.network(images), rtol=1e-5, atol=1e-6)
    assert not features.network.training
    assert all(not p.requires_grad for p in features.network.parameters())
    held_out = squares(128, 1)
    accuracy = float((features.logits(held_out.x1).argmax(1) == held_out.label).double().mean())
    assert accuracy == pytest.approx(features.test_accuracy)


def test_a_second_call_finds_the_cache_and_trains_nothing(trained, monkeypatch):
    weights = Path(trained.directory) / WEIGHTS
    before = weights.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("the cache should have been hit")

    monkeypatch.setattr(tool, "train_classifier", no_training)
    again = tool.build_feature_net(
        squares(512, 0),
        squares(128, 1),
        classes=["dark", "bright"],
        data_hash="squares",
        settings=TINY,
        out=trained.directory,
        progress=False,
    )
    assert not again.trained and again.config == trained.config
    assert weights.stat().st_mtime_ns == before
    other = tool.Settings(epochs=1, batch=32, widths=(4, 8), dim=6)
    with pytest.raises(ValueError, match="other data or settings.*--force"):
        tool.build_feature_net(
            squares(64, 0), squares(64, 1), classes=["dark", "bright"], data_hash="squares", settings=other,
            out=trained.directory, progress=False,
        )  # fmt: skip


def test_the_cache_key_follows_data_and_settings():
    key = tool.cache_key(tool.manifest_hash("train", "test"), TINY)
    assert key == tool.cache_key(tool.manifest_hash("train", "test"), TINY)
    assert key != tool.cache_key(tool.manifest_hash("train", "test2"), TINY)
    assert key != tool.cache_key(tool.manifest_hash("train", "test"), tool.Settings(epochs=2))
    assert tool.manifest_hash("ab", "c") != tool.manifest_hash("a", "bc")


def test_missing_weights_and_wrong_shapes_are_clear_errors(trained, tmp_path):
    with pytest.raises(ValueError, match=r"features.classifier.weights: there is no config.json at .*nowhere"):
        ClassifierFeatures(weights=str(tmp_path / "nowhere"))
    half = tmp_path / "half"
    half.mkdir()
    (half / CONFIG).write_text((Path(trained.directory) / CONFIG).read_text())
    with pytest.raises(ValueError, match=r"the weights .*model.safetensors.* are missing"):
        ClassifierFeatures(weights=str(half))
    features = ClassifierFeatures(weights=trained.directory)
    with pytest.raises(
        ValueError, match=r"trained on images of shape \(1, 8, 8\); got a batch of shape \(2, 3, 8, 8\)"
    ):
        features(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"trained on images of shape \(1, 8, 8\)"):
        features(torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"train images are \(1, 8, 8\) but test images are \(1, 4, 4\)"):
        tool.build_feature_net(
            squares(64, 0), Batch(x1=torch.zeros(4, 1, 4, 4), label=torch.zeros(4, dtype=torch.long)),
            classes=["dark", "bright"], data_hash="x", settings=TINY, out=str(tmp_path / "n"), progress=False,
        )  # fmt: skip


def test_frechet_distance_in_classifier_features_separates_the_classes(trained):
    """Only dark images against the mixed data set score worse than mixed images do."""

    class Mixed:
        data_shape = SHAPE
        num_classes = 2

        def stream(self, request):
            raise NotImplementedError

        def read(self, limit=None):
            return squares(limit, 3)

    metric = FrechetDistance(features=ClassifierFeatures(weights=trained.directory), reference_size=400, progress=False)
    assert metric.name == "fd_classifier"
    dataset = Mixed()
    mixed = metric(squares(400, 4).x1, dataset)
    dark = squares(800, 5)
    only_dark = metric(dark.x1[dark.label == 0], dataset)
    assert only_dark > 5 * mixed
