"""Sample grids of several image runs side by side: one row per run, one column per NFE.

    python tools/compare_grids.py RUN_DIR [RUN_DIR ...] --out grids.png [--nfe 1 2 4] [--n 16]

Every run samples with its own sampler (`evaluate.sampler`: flow-map jumps, or Euler
steps for flow matching) and its headline EMA weights, from the noise its evaluation draws
with `--seed`, so the panels differ only by the model and the number of network evaluations.
"""

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from flowmap_core.figures import show, tile  # noqa: E402
from flowmap_core.run_sampler import RunSampler  # noqa: E402


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
        sampler = RunSampler.open(run_dir)
        x0 = sampler.noise(args.n, args.seed)
        label = getattr(sampler.spec.sampler, "label", "flow map")
        per_step = getattr(sampler.spec.sampler, "nfe_per_step", 1)
        for col, nfe in enumerate(args.nfe):
            out = sampler.sample(x0, max(nfe // per_step, 1))
            show(axes[row][col], tile(out.x, columns))
            axes[row][col].set_title(f"{run_dir.name}, {label}, NFE {nfe}", fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"compare_grids: written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
