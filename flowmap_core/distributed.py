"""Data-parallel training on torch.distributed, launched by torchrun.

Gradients are averaged by an explicit all-reduce after `backward()` instead of a
`DistributedDataParallel` wrapper: `torch.func.jvp` through a DDP-wrapped module fails,
and calling the inner module skips DDP's gradient hooks. The explicit reduction works
for every objective, forward-mode derivatives included, and there is no wrapper whose
teardown can abort a process. Only rank 0 writes files.
"""

import os
from collections.abc import Iterable

import attrs
import torch
import torch.distributed as dist
from torch import nn

from flowmap_core.errors import FlowmapError


@attrs.frozen
class Context:
    """Where this process sits: its rank among `world_size` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


class DeviceError(FlowmapError, ValueError):
    """A device that is not a device, or does not exist on this machine."""


def available_devices() -> list[str]:
    """The devices this machine has: 'cpu', then 'cuda:0', 'cuda:1', ... and 'mps' if present."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """'auto' is the local CUDA device when there is one, else the CPU.

    A device that is not one, or that this machine lacks (`cuda:7` on a machine with
    two GPUs, `cuda` without CUDA), is a DeviceError naming the devices there are.
    """
    if device == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(
            f"{device!r} is not a device; use 'auto' or one of {', '.join(available_devices())}"
        ) from None
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", local_rank)
    available = available_devices()
    missing = str(resolved) not in available if resolved.type == "cuda" else "mps" not in available
    if resolved.type in ("cuda", "mps") and missing:
        raise DeviceError(f"device {str(resolved)!r} does not exist on this machine; it has {', '.join(available)}")
    return resolved


def setup(device: str = "auto") -> Context:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else run alone.

    The backend is NCCL on CUDA and gloo on the CPU; torchrun's rendezvous flags
    (--nnodes, --rdzv-endpoint, ...) apply as usual.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    return Context(rank=rank, world_size=world_size, local_rank=local_rank, device=resolved)


def teardown(context: Context, completed: bool = True) -> None:
    """Leave the process group: after a completed run, barrier then destroy it (so no
    process exits while another still talks to it); after an error, destroy it at once
    (a barrier would wait for ranks that may never arrive)."""
    if context.distributed and dist.is_initialized():
        if completed:
            dist.barrier()
        dist.destroy_process_group()


def broadcast_parameters(module: nn.Module, context: Context) -> None:
    """Make every rank start from rank 0's weights and buffers."""
    if not context.distributed:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def average_gradients(parameters: Iterable[nn.Parameter], context: Context) -> None:
    """Replace each gradient by its mean over ranks (one all-reduce of a flat buffer)."""
    if not context.distributed:
        return
    parameters = list(parameters)
    for p in parameters:
        if p.grad is None:  # every rank must send the same buffer layout
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in parameters]
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= context.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def sum_over_ranks(value: torch.Tensor, context: Context) -> torch.Tensor:
    """`value` summed over ranks (a new tensor; `value` itself on one process)."""
    if not context.distributed:
        return value
    total = value.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def all_true(flag: bool, context: Context) -> bool:
    """Whether `flag` holds on every rank (so all ranks skip a step together)."""
    if not context.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=context.device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item() == 1.0)


def all_finite(finite: torch.Tensor, context: Context) -> torch.Tensor:
    """`finite` (a 0-d bool tensor) and-ed over ranks, on the device: no host synchronisation."""
    if not context.distributed:
        return finite
    value = finite.to(torch.float32).reshape(1)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return value[0] == 1.0
