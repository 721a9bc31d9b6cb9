"""A run directory and the files in it.

    config.gin             the full config, written when the run starts
    operative_config.gin   the bindings actually used, written after the first step
    metrics.jsonl          one JSON record per logged step
    checkpoints/step_*/    weights, EMA, optimiser and RNG states (flowmap_core.checkpoint)
    scores.json            every score of the run as data (flowmap_core.scores)
    report.md              scores.json rendered with the run's settings (flowmap_core.report)

The trainer, the CLI, the sweeps and every tool reach a run's files through `RunDir`.
"""

import json
import shutil
from pathlib import Path
from typing import Any

import attrs
import torch

from flowmap_core import checkpoint as ckpt
from flowmap_core.errors import FlowmapError
from flowmap_core.scores import Scores


class RunDirError(FlowmapError, RuntimeError):
    """A directory that is not the run it was taken for (no config, no checkpoint)."""


@attrs.frozen
class RunDir:
    """The files of the run in `path`; nothing is read or written until asked."""

    path: Path = attrs.field(converter=Path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / "config.gin"

    @property
    def operative_config(self) -> Path:
        return self.path / "operative_config.gin"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def scores(self) -> Path:
        return self.path / "scores.json"

    @property
    def report(self) -> Path:
        return self.path / "report.md"

    def __truediv__(self, name: str) -> Path:
        """Another file of the run (a figure, a tool's output)."""
        return self.path / name

    # ----------------------------------------------------------------- reading

    def is_run(self) -> bool:
        """Whether the directory holds a run's config."""
        return self.config.is_file()

    def require(self) -> "RunDir":
        """This run directory; an error if it has no config.gin."""
        if not self.is_run():
            raise RunDirError(f"{self.path} is not a run directory: it has no config.gin")
        return self

    def latest_checkpoint(self, device: torch.device | str = "cpu") -> ckpt.Found | None:
        """The newest complete checkpoint (None if there is none)."""
        return ckpt.latest(self.checkpoints, device=device)

    def checkpoint_steps(self) -> list[int]:
        """Steps of the complete checkpoints, oldest first."""
        return [int(path.name.removeprefix("step_")) for path in ckpt.complete_checkpoints(self.checkpoints)]

    def metric_records(self) -> list[dict[str, Any]]:
        """Every record of metrics.jsonl, in order (none if it does not exist)."""
        if not self.metrics.is_file():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def read_scores(self) -> Scores | None:
        """The run's scores.json (None if the run has not been scored)."""
        if not self.scores.is_file():
            return None
        return Scores.loads(self.scores.read_text())

    def finished(self) -> bool:
        """Whether training ran to its last step (by the budget recorded in scores.json)."""
        scores = self.read_scores()
        return scores is not None and scores.budget is not None and scores.budget.finished

    def scored(self) -> bool:
        """Whether the run has been evaluated (scores.json holds a table)."""
        scores = self.read_scores()
        return scores is not None and bool(scores.tables)

    # ----------------------------------------------------------------- writing

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, text: str) -> Path:
        """Write the file `name` of the run; returns its path."""
        path = self.path / name
        path.write_text(text)
        return path

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")

    def forget_metrics_after(self, step: int) -> None:
        """Drop metric records past `step` (a resumed run trains those steps again)."""
        if not self.metrics.is_file():
            return
        kept = [
            line for line in self.metrics.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step
        ]
        tmp = self.metrics.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(self.metrics)

    def forget_checkpoints_after(self, step: int) -> None:
        """Delete the checkpoints past `step` (a rollback trains those steps again)."""
        for path in ckpt.complete_checkpoints(self.checkpoints):
            if int(path.name.removeprefix("step_")) > step:
                shutil.rmtree(path, ignore_errors=True)

    def write_scores(self, scores: Scores) -> Path:
        """Write scores.json whole (atomically: a reader sees the old file or the new one)."""
        tmp = self.scores.with_suffix(".tmp")
        tmp.write_text(scores.dumps())
        tmp.replace(self.scores)
        return self.scores

    def update_scores(self, **changes: Any) -> Scores:
        """Replace fields of scores.json (`tables`, `seed`, `budget`), keeping the others."""
        scores = attrs.evolve(self.read_scores() or Scores(), **changes)
        self.write_scores(scores)
        return scores

    def add_tool_scores(self, found: dict[str, float]) -> Scores:
        """Add a tool's flat scores (`{"name": number}`) beside what scores.json holds."""
        scores = self.read_scores() or Scores()
        return self.update_scores(tool=scores.tool | {k: float(v) for k, v in found.items()})
