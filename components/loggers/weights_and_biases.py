"""Weights & Biases in offline mode (the `wandb` extra): `wandb sync RUN_DIR/wandb/offline-run-*` uploads it."""

import hashlib
from collections.abc import Mapping
from pathlib import Path

import attrs
import numpy as np

from flowmap_core.registry import register


def _wandb():
    try:
        import wandb
    except ImportError:
        raise ValueError("logger.wandb needs the optional extra: pip install -e '.[wandb]'") from None
    return wandb


@register("logger", "wandb")
@attrs.define(frozen=True, kw_only=True)
class WandB:
    """A W&B run logged offline under RUN_DIR/wandb, never over the network: the same
    scalars, text and images as `logger.tensorboard`, in `project`. The W&B run id is a hash
    of the run directory's path, so a resumed run continues its W&B run."""

    project: str = "flowmap"

    def __attrs_post_init__(self) -> None:
        _wandb()

    def open(self, path: Path, resume_step: int | None) -> "WandBSession":
        path = Path(path).resolve()
        run_id = hashlib.sha256(str(path).encode()).hexdigest()[:16]
        run = _wandb().init(
            project=self.project, name=path.name, id=run_id, dir=str(path), mode="offline", resume="allow"
        )
        return WandBSession(run)


@attrs.define
class WandBSession:
    run: object

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        self.run.log(dict(values), step=step)

    def text(self, step: int, name: str, text: str) -> None:
        self.run.log({name: _wandb().Html(f"<pre>{text}</pre>")}, step=step)

    def image(self, step: int, name: str, pixels: np.ndarray) -> None:
        self.run.log({name: _wandb().Image(pixels)}, step=step)

    def close(self) -> None:
        self.run.finish()
