"""TensorBoard event files in the run directory (`torch.utils.tensorboard`, the `tensorboard` extra)."""

import math
from collections.abc import Mapping
from pathlib import Path

import attrs
import numpy as np

from flowmap_core.registry import register


def _summary_writer():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("logger.tensorboard needs the optional extra: pip install -e '.[tensorboard]'") from None
    return SummaryWriter


@register("logger", "tensorboard")
@attrs.define(frozen=True, kw_only=True)
class TensorBoard:
    """Event files under RUN_DIR/`folder` (`tensorboard --logdir RUN_DIR`): every logged
    training scalar as train/<name>, the operative config as text, and at each evaluation
    its scores (<metric>/<weights>/<k steps or NFE>), score tables and sample grids."""

    folder: str = "tensorboard"

    def __attrs_post_init__(self) -> None:
        _summary_writer()

    def open(self, path: Path, resume_step: int | None) -> "TensorBoardSession":
        writer = _summary_writer()(
            log_dir=str(Path(path) / self.folder), purge_step=None if resume_step is None else resume_step + 1
        )
        return TensorBoardSession(writer)


@attrs.define
class TensorBoardSession:
    writer: object

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            if math.isfinite(value):
                self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def text(self, step: int, name: str, text: str) -> None:
        self.writer.add_text(name, "\n".join("    " + line for line in text.splitlines()), step)
        self.writer.flush()

    def image(self, step: int, name: str, pixels: np.ndarray) -> None:
        self.writer.add_image(name, pixels, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
