"""On CUDA with `jvp-flash-attention` installed, the UNet's and the DiT's attention use its kernel,
and its forward-mode derivative equals the math kernel's (skipped elsewhere: it needs a GPU)."""

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from flowmap_components.backbones import dit_blocks, unet_blocks

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or unet_blocks.JVP_FLASH_ATTENTION is None,
    reason="needs CUDA and the jvp-flash-attention package",
)


def test_flash_kernel_jvp_equals_the_math_kernel():
    torch.manual_seed(0)
    q, k, v, dq, dk, dv = torch.randn(6, 2, 4, 64, 32, device="cuda").unbind(0)
    flash, d_flash = torch.func.jvp(unet_blocks.JVP_FLASH_ATTENTION, (q, k, v), (dq, dk, dv))
    with sdpa_kernel(SDPBackend.MATH):
        math, d_math = torch.func.jvp(F.scaled_dot_product_attention, (q, k, v), (dq, dk, dv))
    torch.testing.assert_close(flash, math, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(d_flash, d_math, rtol=2e-3, atol=2e-3)


def test_self_attention_uses_the_flash_kernel_on_cuda():
    block = unet_blocks.SelfAttention(64, 32).cuda()
    x = torch.randn(2, 64, 8, 8, device="cuda")
    with torch.no_grad():
        block.out.weight.normal_()
    via_flash = block(x)
    original = unet_blocks.JVP_FLASH_ATTENTION
    try:
        unet_blocks.JVP_FLASH_ATTENTION = None
        via_math = block(x)
    finally:
        unet_blocks.JVP_FLASH_ATTENTION = original
    torch.testing.assert_close(via_flash, via_math, rtol=2e-3, atol=2e-3)


def test_dit_attention_uses_the_flash_kernel_on_cuda():
    block = dit_blocks.Attention(64, 2).cuda()
    h = torch.randn(2, 16, 64, device="cuda")
    dh = torch.randn_like(h)
    via_flash, d_flash = torch.func.jvp(block, (h,), (dh,))
    original = unet_blocks.JVP_FLASH_ATTENTION
    try:
        unet_blocks.JVP_FLASH_ATTENTION = None
        with sdpa_kernel(SDPBackend.MATH):
            via_math, d_math = torch.func.jvp(block, (h,), (dh,))
    finally:
        unet_blocks.JVP_FLASH_ATTENTION = original
    _, d_pass = block.tangent(h, dh)
    torch.testing.assert_close(via_flash, via_math, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(d_flash, d_math, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(d_pass, d_math, rtol=2e-3, atol=2e-3)
