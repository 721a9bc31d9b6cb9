"""Exponential moving averages of a network's weights, at one or several rates."""

import copy

import torch
from torch import nn


def ema_name(rate: float) -> str:
    """The name under which the EMA at `rate` is logged and saved, e.g. 'ema_0.999'."""
    return f"ema_{rate:g}"


class EMA:
    """Copies of `net` whose weights track `rate * ema + (1 - rate) * weights` after each step.

    With `warmup`, the rate at update n is min(rate, (1 + n) / (10 + n)), so early
    averages are not dominated by the random initialisation. Buffers are copied. An update
    masked off by `apply` (a skipped training step) still counts towards n, so the
    schedule needs no host synchronisation.
    """

    def __init__(self, net: nn.Module, rates: tuple[float, ...], warmup: bool = True):
        for rate in rates:
            if not 0.0 < rate < 1.0:
                raise ValueError(f"EMA rates must be in (0, 1), got {rate}")
        if len(set(rates)) != len(rates):
            raise ValueError(f"EMA rates must be distinct, got {rates}")
        self.rates = tuple(rates)
        self.warmup = warmup
        self.updates = 0
        self.nets: dict[float, nn.Module] = {}
        for rate in self.rates:
            average = copy.deepcopy(net).eval()
            average.requires_grad_(False)
            self.nets[rate] = average

    @torch.no_grad()
    def update(self, net: nn.Module, apply: torch.Tensor) -> None:
        """One averaging step towards `net`'s weights where `apply` (a 0-d bool tensor: the
        step's finiteness) is True, decided on the device. ema += w (net - ema) with w a
        device tensor, since torch's lerp with a tensor weight synchronises on CUDA."""
        params = list(net.parameters())
        for rate, average in self.nets.items():
            if self.warmup:
                rate = min(rate, (1 + self.updates) / (10 + self.updates))
            averages = list(average.parameters())
            steps = torch._foreach_sub(params, averages)
            if steps:
                torch._foreach_mul_(steps, apply.to(steps[0].dtype) * (1.0 - rate))
                torch._foreach_add_(averages, steps)
            for mine, theirs in zip(average.buffers(), net.buffers(), strict=True):
                mine.copy_(theirs)
        self.updates += 1

    def named(self) -> dict[str, nn.Module]:
        """{'ema_0.999': net, ...}"""
        return {ema_name(rate): average for rate, average in self.nets.items()}
