"""Sample grids of several image runs side by side: one row per run, one column per NFE.

    python tools/compare_grids.py RUN_DIR [RUN_DIR ...] --out grids.png [--nfe 1 2 4] [--n 16]

Every run samples with its own sampler (`evaluate.sampler`: flow-map jumps, or Euler
steps for flow matching) and its headline EMA weights, from the same noise, so the
panels differ only by the model and the number of network evaluations.
"""

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from flowmap_core import runs  # noqa: E402
from flowmap_core.report import show, tile  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--nfe", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--n", type=int, default=16, help="images per panel")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    columns = max(1, int(args.n**0.5))
    fig, axes = plt.subplots(
        len(args.run_dirs), len(args.nfe), figsize=(2.2 * len(args.nfe), 2.4 * len(args.run_dirs)), squeeze=False
    )
    for row, run_dir in enumerate(args.run_dirs):
        trainer = runs.open_run(run_dir)
        spec = runs.build_eval_spec()
        name = runs.headline_weights(trainer)
        X = runs.flow_maps(trainer, [name])[name]
        generator = torch.Generator().manual_seed(args.seed)
        x0 = torch.randn((args.n, *trainer.spec.dataset.data_shape), generator=generator).to(trainer.device)
        label = getattr(spec.sampler, "label", "flow map")
        per_step = getattr(spec.sampler, "nfe_per_step", 1)
        for col, nfe in enumerate(args.nfe):
            with torch.no_grad():
                out = spec.sampler(
                    X, x0, max(nfe // per_step, 1), interpolant=trainer.spec.interpolant, generator=generator
                )
            show(axes[row][col], tile(out.x, columns))
            axes[row][col].set_title(f"{run_dir.name}, {label}, NFE {nfe}", fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"compare_grids: written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
