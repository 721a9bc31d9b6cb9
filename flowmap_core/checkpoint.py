"""Checkpoints that cannot run code, written atomically, the last K kept.

A checkpoint is a directory `checkpoints/step_XXXXXXXX/` holding

- `model.safetensors`: the trained modules' weights (backbone, learned weighting);
- `ema.safetensors`: every EMA copy, keys prefixed by its name (`ema_0.999/...`);
- `optimizer.pt`: the optimiser's state, loaded with `torch.load(weights_only=True)`;
- `rng.safetensors`: the states of the random generators;
- `state.json`: step, counters, and the digest of the run's config.

It is written to a hidden temporary directory, every file fsynced, then renamed into
place (rename is atomic), so a kill at any moment leaves either the old set of
checkpoints or the new one. Resume picks the newest complete checkpoint.
"""

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from flowmap_core.errors import FlowmapError

FILES = ("model.safetensors", "ema.safetensors", "optimizer.pt", "rng.safetensors", "state.json")


class CheckpointError(FlowmapError, RuntimeError):
    """A checkpoint that is missing, incomplete, or does not fit the model."""


@attrs.frozen
class Checkpoint:
    """What a checkpoint holds, in memory."""

    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, torch.Tensor]
    state: dict[str, Any]


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:08d}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cpu(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


def save(root: Path, step: int, checkpoint: Checkpoint, keep: int) -> Path:
    """Write `checkpoint` for `step` under `root` atomically; keep the newest `keep`."""
    root.mkdir(parents=True, exist_ok=True)
    final = step_dir(root, step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(_cpu(checkpoint.model), tmp / "model.safetensors")
    save_file(_cpu(checkpoint.ema), tmp / "ema.safetensors")
    torch.save(checkpoint.optimizer, tmp / "optimizer.pt")
    save_file(_cpu(checkpoint.rng), tmp / "rng.safetensors")
    (tmp / "state.json").write_text(json.dumps(checkpoint.state, indent=1, sort_keys=True))
    for name in FILES:
        _fsync(tmp / name)
    _fsync(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync(root)
    for old in complete_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete_checkpoints(root: Path) -> list[Path]:
    """Checkpoint directories holding every file, oldest first (temporary ones ignored)."""
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step_*") if p.is_dir() and all((p / f).is_file() for f in FILES)]
    return sorted(found, key=lambda p: p.name)


def load(path: Path, device: torch.device | str = "cpu") -> Checkpoint:
    """Read a checkpoint directory; no pickle is executed (safetensors, weights_only)."""
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    try:
        return Checkpoint(
            model=load_file(path / "model.safetensors", device=str(device)),
            ema=load_file(path / "ema.safetensors", device=str(device)),
            optimizer=torch.load(path / "optimizer.pt", map_location=device, weights_only=True),
            rng=load_file(path / "rng.safetensors"),
            state=json.loads((path / "state.json").read_text()),
        )
    except CheckpointError:
        raise
    except Exception as error:  # a corrupt file: say which checkpoint, and why
        raise CheckpointError(f"checkpoint {path} cannot be read: {error}") from error


@attrs.frozen
class Found:
    """The newest readable checkpoint, and why any newer ones were passed over."""

    path: Path
    checkpoint: Checkpoint
    passed_over: tuple[str, ...] = ()


def latest(root: Path, device: torch.device | str = "cpu") -> Found | None:
    """The newest readable complete checkpoint under `root`, or None if there is none."""
    passed_over = []
    for path in reversed(complete_checkpoints(root)):
        try:
            return Found(path=path, checkpoint=load(path, device), passed_over=tuple(passed_over))
        except CheckpointError as error:
            passed_over.append(str(error))
    return None


def load_weights(module: nn.Module, tensors: Mapping[str, torch.Tensor], what: str) -> None:
    """Copy `tensors` into `module`, naming any missing, unexpected or mis-shaped tensor."""
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = [
        f"{k}: checkpoint {tuple(tensors[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(tensors))
        if tensors[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        problems = []
        if wrong:
            problems.append("shapes differ for " + "; ".join(wrong))
        if missing:
            problems.append("missing from the checkpoint: " + ", ".join(missing))
        if unexpected:
            problems.append("not in the model: " + ", ".join(unexpected))
        raise CheckpointError(f"the {what} checkpoint does not fit this architecture: {' | '.join(problems)}")
    module.load_state_dict(dict(tensors))


def prefixed(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of `tensors` under `prefix/`, with the prefix removed."""
    head = prefix + "/"
    return {k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)}
