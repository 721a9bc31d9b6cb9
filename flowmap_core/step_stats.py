"""What the training loop keeps about its steps, on the device, between two reads.

A step's loss, gradient norm, named terms and whether it was finite stay tensors on the
device: summing them for the log line and counting skipped steps costs no host
synchronisation. The loop reads them (one transfer) only when it writes a log line or a
checkpoint, or after every step when it must decide a skip on the host anyway.
"""

import time
from typing import Any

import attrs
import torch
from torch import Tensor


@attrs.frozen
class StepResult:
    """What one step did: its loss, gradient norm and named terms (0-d tensors on the device),
    and `finite`, a 0-d bool tensor: False when the step was skipped (no update)."""

    loss: Tensor
    grad_norm: Tensor
    terms: dict[str, Tensor]
    finite: Tensor

    @property
    def skipped(self) -> bool:
        """Whether the step was skipped (reads the flag: a host synchronisation)."""
        return not bool(self.finite)

    def values(self) -> dict[str, Tensor]:
        """Every logged quantity of the step, by name."""
        return {"loss": self.loss, "grad_norm": self.grad_norm, **self.terms}


@attrs.frozen
class SkipReport:
    """The skip counters as read on the host: the run's total, the current run of consecutive
    skips, the longest run since the previous read, the skips since then, and the names of
    the quantities that were not finite in them ('loss', 'grad_norm' or a term)."""

    total: int
    in_a_row: int
    longest: int
    new: int
    culprits: tuple[str, ...]

    def what(self) -> str:
        """What was not finite, in words."""
        terms = [name for name in self.culprits if name not in ("loss", "grad_norm")]
        if terms:
            return f"objective terms {', '.join(terms)}"
        return "the loss" if "loss" in self.culprits else "the gradient"


class SkipCounter:
    """Counts skipped steps on the device: total, consecutive, and the longest run of
    consecutive skips since the last `read`, so a check every N steps sees a run that
    already ended."""

    def __init__(self, device: torch.device, total: int = 0, in_a_row: int = 0):
        self.device = device
        self.counts = torch.tensor([total, in_a_row, in_a_row], dtype=torch.int64, device=device)
        self._read_total = total
        self._culprits: dict[str, Tensor] = {}

    def add(self, result: StepResult) -> None:
        skip = (~result.finite).to(torch.int64)
        total, in_a_row, longest = self.counts.unbind()
        in_a_row = (in_a_row + 1) * skip
        self.counts = torch.stack([total + skip, in_a_row, torch.maximum(longest, in_a_row)])
        for name, value in result.values().items():
            bad = ~torch.isfinite(value.detach()) & ~result.finite
            self._culprits[name] = bad if name not in self._culprits else self._culprits[name] | bad

    def read(self) -> SkipReport:
        """The counters on the host (one transfer); starts a new period for `longest` and `new`."""
        names = list(self._culprits)
        flags = torch.stack([self._culprits[n] for n in names]).tolist() if names else []
        total, in_a_row, longest = self.counts.tolist()
        report = SkipReport(
            total=total,
            in_a_row=in_a_row,
            longest=longest,
            new=total - self._read_total,
            culprits=tuple(n for n, bad in zip(names, flags, strict=True) if bad),
        )
        self.counts = torch.tensor([total, in_a_row, in_a_row], dtype=torch.int64, device=self.device)
        self._read_total = total
        self._culprits = {}
        return report


class Window:
    """Running means of the logged quantities between two log lines, summed on the device
    over the steps that were not skipped."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.count: Tensor | int = 0
        self.since = time.perf_counter()

    def add(self, result: StepResult) -> None:
        values = result.values()
        device = result.finite.device
        stacked = torch.stack([v.detach().to(device=device, dtype=torch.float32) for v in values.values()])
        kept = torch.where(result.finite, stacked, torch.zeros_like(stacked)).unbind()
        for name, value in zip(values, kept, strict=True):
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.count = self.count + result.finite.to(torch.int64)

    def flush(self, step: int, elapsed: float, skipped: int, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The log line's record (one host transfer); starts a new window."""
        seconds = time.perf_counter() - self.since
        record: dict[str, Any] = {"step": step}
        count = int(self.count)
        if count and self.sums:
            means = (torch.stack(list(self.sums.values())) / count).tolist()
            record.update(zip(self.sums, means, strict=True))
        record.setdefault("loss", float("nan"))
        record["lr"] = optimizer.param_groups[0]["lr"]
        record["skipped_total"] = skipped
        record["steps_per_s"] = count / seconds if seconds > 0 else float("nan")
        record["elapsed_s"] = elapsed
        self.reset()
        return record
