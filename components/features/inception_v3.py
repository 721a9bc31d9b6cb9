"""The FID Inception-v3 (pytorch-fid's network) and its 2048-d pool3 features, from a weights
file the user points to.

FID is defined by one network: the TensorFlow Inception graph of 2015-12-05 that the
original TTUR code used. pytorch-fid ported its weights to `pt_inception-2015-12-05-
6726825d.pth`, a state dict for torchvision's `Inception3` layout (1008 classes, no
auxiliary head) in which four kinds of block compute differently from torchvision's own
Inception-v3, because TensorFlow's graph does:

- the 3x3 average pools inside Mixed_5b-5d (InceptionA), Mixed_6b-6e (InceptionC) and
  Mixed_7b (InceptionE) leave the zero padding out of the average (`count_include_pad=False`);
- Mixed_7c's pooling branch takes a 3x3 *max* pool instead of an average.

The network is written here with those blocks and torchvision's module names, so the file
loads with strict=True. No weights ship with flowmap and nothing is downloaded.
"""

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from flowmap_components.features.imagenet_input import Images, check_images, load_strictly, read_state_dict, rgb_at
from flowmap_core.registry import register
from flowmap_core.typing import Float, Tensor, typechecked
from flowmap_core.validators import positive_integer

RESOLUTION = 299
"""The FID network's input resolution."""
PoolFeatures = Float[Tensor, "batch 2048"]


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _average_pool(x: Tensor) -> Tensor:
    """TensorFlow's 3x3, stride-1, "SAME" average pool: padding is not counted in the mean."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pooled 1x1 branches (pytorch-fid's FIDInceptionA)."""

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(_average_pool(x))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], 1)


class InceptionB(nn.Module):
    """Reduction 35x35 -> 17x17 (Mixed_6a): stride-2 3x3, double 3x3 and max-pool branches."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), branch3x3dbl, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (pytorch-fid's FIDInceptionC)."""

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for layer in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            branch7x7dbl = layer(branch7x7dbl)
        branch_pool = self.branch_pool(_average_pool(x))
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, branch_pool], 1)


class InceptionD(nn.Module):
    """Reduction 17x17 -> 8x8 (Mixed_7a): 3x3, 7x7-then-3x3 and max-pool branches."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([branch3x3, branch7x7x3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 outputs (pytorch-fid's FIDInceptionE_1 with
    `max_pool=False`, FIDInceptionE_2 with `max_pool=True`)."""

    def __init__(self, in_channels: int, *, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(h), self.branch3x3_2b(h)], 1)
        h = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(h), self.branch3x3dbl_3b(h)], 1)
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _average_pool(x)
        return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """pytorch-fid's FID Inception-v3 with torchvision's module names (23.9 M parameters).

    Input: RGB `(batch, 3, 299, 299)` in [-1, 1]. `features` gives the 2048-d output of the
    final average pool ("pool3", the FID features); `forward` the 1008 logits of the
    TensorFlow graph's classifier.
    """

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    def features(self, x: Tensor) -> Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
            self.Mixed_7a,
            self.Mixed_7b,
            self.Mixed_7c,
        ):
            x = block(x)
        return x.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def _non_empty(instance: "InceptionV3Features", attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(
            "features.inception_v3.weights must be a path or fsspec URL to pytorch-fid's "
            f"pt_inception-2015-12-05-6726825d.pth; got {value!r}"
        )


@register("features", "inception_v3")
@attrs.define(frozen=True, kw_only=True)
class InceptionV3Features:
    """FID features: pool3 (2048-d) of pytorch-fid's Inception-v3, from your weights file.

    `weights` is a local path or an fsspec URL to pytorch-fid's `pt_inception-2015-12-05-
    6726825d.pth` (from pytorch-fid's GitHub release "fid_weights"); it is read once, when
    the component is built, with `torch.load(weights_only=True)`, and must match the network
    key for key and shape for shape (a ValueError names the file and the first missing or
    unexpected keys otherwise). `weights_sha256` records which file was used.

    Input handling follows pytorch-fid: images `(batch, 1 or 3, H, W)` in [-1, 1] (clipped to
    it) are resized bilinearly to 299 x 299 without antialiasing, gray is repeated to RGB,
    and the network sees [-1, 1] (pytorch-fid's `normalize_input` maps [0, 1] to it).
    Extraction runs without gradients in chunks of `batch_size` on the images' device.

    A Fréchet distance of these features is comparable with published FIDs only with the
    standard weights, on 50,000 generated samples (FID is biased upward at smaller n),
    against the standard reference statistics of the dataset (e.g. pytorch-fid's or the
    original TTUR code's), with samples quantised to 8-bit images as those pipelines do.
    Otherwise it is a useful distance on its own scale, not "the FID". On CUDA, cuDNN's TF32
    convolutions (PyTorch's default) perturb the features slightly; compute both sides of a
    distance under the same setting (`torch.backends.cudnn.allow_tf32`).
    """

    weights: str = attrs.field(validator=_non_empty)
    batch_size: int = attrs.field(default=50, validator=positive_integer)
    name: str = attrs.field(default="inception_v3", init=False)
    resolution: int = attrs.field(default=RESOLUTION, init=False)
    dim: int = attrs.field(default=2048, init=False)
    weights_sha256: str = attrs.field(init=False)
    network: FIDInceptionV3 = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        where = "features.inception_v3.weights"
        state, sha256 = read_state_dict(self.weights, where=where)
        network = FIDInceptionV3()
        load_strictly(network, state, source=self.weights, where=where)
        object.__setattr__(self, "weights_sha256", sha256)
        network = network.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        object.__setattr__(self, "network", network)

    def inputs(self, images: Tensor) -> Tensor:
        """The network's input `(batch, 3, 299, 299)` in [-1, 1] for `images` in [-1, 1]."""
        check_images(images, where="features.inception_v3")
        return rgb_at(images, RESOLUTION, antialias=False)

    @typechecked
    def __call__(self, images: Images) -> PoolFeatures:
        """Features `(batch, 2048)` of `images` `(batch, 1 or 3, height, width)` in [-1, 1]."""
        self.network.to(images.device)
        with torch.no_grad():
            return torch.cat([self.network.features(self.inputs(chunk)) for chunk in images.split(self.batch_size)])
