"""Forward-mode derivatives for the objectives: `d/dt X_{s,t}`, `d/ds X_{s,t}`, `grad_x X . v`.

Time derivatives are exact (forward-mode autodiff, `torch.func.jvp`), never finite
differences. Fused scaled-dot-product-attention kernels have no forward-mode derivative,
so every JVP runs with the math kernel selected; the result is differentiable by ordinary
backpropagation, so the student's gradients flow through it.
"""

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel


def jvp(fn: Callable[..., Tensor], primals: Sequence[Tensor], tangents: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """`(fn(*primals), d/de fn(primals + e * tangents) at e = 0)` in one forward pass."""
    with sdpa_kernel(SDPBackend.MATH):
        return torch.func.jvp(fn, tuple(primals), tuple(tangents))
