"""Features of a small CNN classifier trained on the data set's own images.

ImageNet networks see 28 x 28 gray clothing or 32 x 32 objects as blurry, upsampled
photographs; a classifier trained on the data set itself knows what separates its classes.
`tools/train_feature_net.py` trains one on a labelled shard set and writes a directory:

    config.json         image shape, class names, architecture, test accuracy, data hash,
                        the Fréchet noise floor, the training settings
    model.safetensors   the weights (and batch-norm statistics)

`features.classifier(weights=DIR)` loads it and gives the `dim`-dimensional embedding
before the class head. Distances in this space are comparable only between runs scored
with the same weights (the config's `data_hash` and the weights file say which).
"""

import json
import os

import attrs
import fsspec
import safetensors.torch
import torch
from torch import nn

from flowmap_core.registry import register
from flowmap_core.typing import Float, Tensor, typechecked
from flowmap_core.validators import positive_integer

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
FORMAT = "flowmap-feature-net/1"
WHAT = "features.classifier.weights"

Images = Float[Tensor, "batch channels height width"]
Features = Float[Tensor, "batch dim"]
Logits = Float[Tensor, "batch classes"]


class FeatureNet(nn.Module):
    """A small CNN classifier: one stage per entry of `widths`, each a stride-2 3x3 conv
    followed by `depth - 1` stride-1 3x3 convs, every conv with batch norm and ReLU; then
    global average pooling, an embedding `Linear(widths[-1], dim)` + ReLU (the features),
    and a linear head to the classes.

    Input `(batch, C, H, W)` in [-1, 1]; `forward` gives the logits, `features` the embedding.
    """

    def __init__(
        self, image_shape: tuple[int, int, int], num_classes: int, widths: tuple[int, ...], dim: int, depth: int = 1
    ):
        super().__init__()
        layers: list[nn.Module] = []
        channels = image_shape[0]
        for width in widths:
            for stride in [2] + [1] * (depth - 1):
                layers += [
                    nn.Conv2d(channels, width, 3, stride=stride, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(),
                ]
                channels = width
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.embed = nn.Sequential(nn.Linear(channels, dim), nn.ReLU())
        self.head = nn.Linear(dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.embed(self.body(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def build_network(config: dict) -> FeatureNet:
    """The (untrained) network that a feature-net config describes."""
    return FeatureNet(
        image_shape=tuple(config["image_shape"]),
        num_classes=len(config["classes"]),
        widths=tuple(config["widths"]),
        dim=config["dim"],
        depth=config["depth"],
    )


def _local(url: str) -> str:
    """`~` expanded in local paths; URLs with a protocol are left as they are."""
    return url if "://" in url else os.path.expanduser(url)


def _join(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name


def save(directory: str, network: FeatureNet, config: dict) -> None:
    """Write `network`'s weights, then `config` (its presence marks a complete directory)."""
    directory = _local(directory)
    fs, root = fsspec.core.url_to_fs(directory)
    fs.makedirs(root, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in network.state_dict().items()}
    with fsspec.open(_join(directory, WEIGHTS), "wb") as f:
        f.write(safetensors.torch.save(state))
    with fsspec.open(_join(directory, CONFIG), "w") as f:
        f.write(json.dumps({"format": FORMAT, **config}, indent=1) + "\n")


def read_config(directory: str) -> dict:
    """The config of the feature net at `directory`; a ValueError names what is missing."""
    url = _join(_local(directory), CONFIG)
    try:
        with fsspec.open(url, "r") as f:
            config = json.loads(f.read())
    except FileNotFoundError:
        raise ValueError(
            f"{WHAT}: there is no {CONFIG} at {url!r}; train the classifier first with "
            "tools/train_feature_net.py --train URL --test URL --out DIR"
        ) from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{WHAT}: {url!r} is not valid JSON ({error})") from None
    except Exception as error:  # an unknown protocol, an unreachable URL, ...
        raise ValueError(f"{WHAT}: cannot open {url!r}: {type(error).__name__}: {error}") from None
    needed = ("image_shape", "classes", "widths", "depth", "dim", "test_accuracy", "data_hash")
    if not isinstance(config, dict) or config.get("format") != FORMAT or any(key not in config for key in needed):
        raise ValueError(f"{WHAT}: {url!r} is not a {FORMAT} config with the fields {', '.join(needed)}")
    return config


def load(directory: str) -> tuple[FeatureNet, dict]:
    """The trained network at `directory` (CPU, eval mode, no gradients) and its config."""
    config = read_config(directory)
    url = _join(_local(directory), WEIGHTS)
    try:
        with fsspec.open(url, "rb") as f:
            state = safetensors.torch.load(f.read())
    except FileNotFoundError:
        raise ValueError(f"{WHAT}: {CONFIG} is there but the weights {url!r} are missing") from None
    except Exception as error:
        raise ValueError(f"{WHAT}: cannot read the weights {url!r}: {type(error).__name__}: {error}") from None
    network = build_network(config)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{WHAT}: the weights {url!r} do not fit the network its config describes: {error}") from None
    return network.eval().requires_grad_(False), config


@register("features", "classifier")
@attrs.define(frozen=True, kw_only=True)
class ClassifierFeatures:
    """The penultimate (embedding) features of a CNN classifier trained on the data set's own
    images by `tools/train_feature_net.py`; `weights` is the directory it wrote (a path or
    fsspec URL).

    `dim` is the embedding size and `test_accuracy` the classifier's accuracy on the test
    split it was checked on. Images must have the shape it was trained on; features are
    computed in eval mode without gradients, `batch_size` images at a time on the images'
    device, and returned in float32.
    """

    weights: str
    batch_size: int = attrs.field(default=512, validator=positive_integer)
    name: str = attrs.field(default="classifier", init=False)
    dim: int = attrs.field(init=False)
    test_accuracy: float = attrs.field(init=False)
    config: dict = attrs.field(init=False, repr=False, eq=False)
    network: FeatureNet = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        network, config = load(self.weights)
        object.__setattr__(self, "network", network)
        object.__setattr__(self, "config", config)
        object.__setattr__(self, "dim", int(config["dim"]))
        object.__setattr__(self, "test_accuracy", float(config["test_accuracy"]))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.config["image_shape"])

    def _check(self, images: Tensor) -> None:
        if images.dim() != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"features.classifier ({self.weights}) was trained on images of shape {self.image_shape}; "
                f"got a batch of shape {tuple(images.shape)}"
            )

    def _chunked(self, images: Tensor, head: bool) -> Tensor:
        self._check(images)
        self.network.to(images.device)
        with torch.no_grad():
            run = self.network if head else self.network.features
            return torch.cat([run(chunk.to(torch.float32)) for chunk in images.split(self.batch_size)])

    @typechecked
    def __call__(self, images: Images) -> Features:
        """Features `(batch, dim)` of `images` `(batch, C, H, W)` in [-1, 1]."""
        return self._chunked(images, head=False)

    @typechecked
    def logits(self, images: Images) -> Logits:
        """The classifier's class logits `(batch, classes)`."""
        return self._chunked(images, head=True)
