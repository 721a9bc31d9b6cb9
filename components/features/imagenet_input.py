"""What the ImageNet feature networks share: turning flowmap images into a network's input
batch, reading a weights file safely, and loading it strictly with errors that say what
was wrong.

flowmap images are `(batch, channels, height, width)` in [-1, 1] with 1 (gray) or 3 (RGB)
channels and any size. ImageNet networks want RGB at one resolution, so `rgb_at` clips to
[-1, 1] (as saving the images to 8-bit files would), repeats gray to three channels and
resizes bilinearly; each network then applies its own normalisation.
"""

import hashlib
import io

import fsspec
import torch
import torch.nn.functional as F
from torch import nn

from flowmap_core.typing import Float, Tensor, typechecked

Images = Float[Tensor, "batch channels height width"]
"""flowmap images: 1 (gray) or 3 (RGB) channels, values in [-1, 1]."""
SquareRGB = Float[Tensor, "batch 3 side side"]
"""A network's input batch: square RGB images."""


def check_images(images: Tensor, *, where: str) -> None:
    """Raise a ValueError unless `images` is a float `(batch, 1 or 3, height, width)` tensor."""
    if images.dim() != 4 or images.shape[1] not in (1, 3) or not images.is_floating_point():
        raise ValueError(
            f"{where}: expected float images shaped (batch, channels, height, width) with 1 (gray) or 3 (RGB) "
            f"channels; got a {images.dtype} tensor of shape {tuple(images.shape)}"
        )


@typechecked
def rgb_at(images: Images, size: int, *, antialias: bool) -> SquareRGB:
    """`images` in [-1, 1] as float32 RGB of `size` x `size`, still in [-1, 1], in channels-last
    memory layout (convolutions on the CPU run about 1.4x faster in it).

    Values are clipped to [-1, 1], gray is repeated to three channels, and the resize is
    bilinear (`align_corners=False`); `antialias` low-pass filters when shrinking (it
    changes nothing when enlarging).
    """
    x = images.to(torch.float32).clamp(-1.0, 1.0)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)
    return x.contiguous(memory_format=torch.channels_last)


def read_state_dict(source: str, *, where: str) -> tuple[dict[str, Tensor], str]:
    """The state dict in the file at `source` (a path or an fsspec URL), read on the CPU, and
    the file's SHA-256 (hex), which records exactly which weights a number came from.

    `torch.load(..., weights_only=True)` unpickles only tensors and plain containers, never
    arbitrary objects. A missing, unreadable or non-state-dict file raises a ValueError
    that names `where` (the component field) and the file.
    """
    try:
        with fsspec.open(source, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ValueError(f"{where}: there is no file at {source!r}") from None
    except Exception as error:  # an unknown protocol, a URL that cannot be reached, ...
        raise ValueError(f"{where}: cannot open {source!r}: {error}") from None
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{where}: {source!r} is not a PyTorch weights file that loads safely ({error})") from None
    if not isinstance(state, dict) or not all(isinstance(value, Tensor) for value in state.values()):
        raise ValueError(f"{where}: {source!r} holds a {type(state).__name__}, not a state dict of tensors")
    return state, hashlib.sha256(raw).hexdigest()


def load_strictly(network: nn.Module, state: dict[str, Tensor], *, source: str, where: str) -> None:
    """Load `state` into `network` with every key matching, or raise a ValueError naming the
    file and the first missing and unexpected keys (and shape mismatches).

    Batch norms' `num_batches_tracked` counters may be absent (older files lack them; they
    play no part in inference) and then start at 0.
    """
    expected = network.state_dict()
    missing = [key for key in expected if key not in state and not key.endswith("num_batches_tracked")]
    unexpected = [key for key in state if key not in expected]
    mismatched = [
        f"{key} {tuple(state[key].shape)} (expected {tuple(value.shape)})"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    if missing or unexpected or mismatched:
        problems = [
            f"{label} ({len(keys)}): {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}"
            for label, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("wrong shapes", mismatched),
            )
            if keys
        ]
        raise ValueError(f"{where}: {source!r} does not hold the weights of this network; " + "; ".join(problems))
    counters = {key: torch.tensor(0) for key in expected if key.endswith("num_batches_tracked") and key not in state}
    network.load_state_dict({**state, **counters}, strict=True)
