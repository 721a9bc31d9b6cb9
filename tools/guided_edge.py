"""Score a guided run's w = 0 edge against its label-free map, at the same sample count.

    python tools/guided_edge.py RUN_DIR [--steps 1 2 4] [--samples 200000] [--weights ema_0.999]

At guidance w = 0 the guided velocity b^0 = b(x, null) carries no class, so every class's
samples at w = 0 should be the whole density, as the label-free map's are (the null class
at w = 1). This samples the label-free map and every class at w = 0 from the same noise,
scores each against the whole density with the run's metric (the histogram KL on a 2D
ring), and writes RUN_DIR/guided_edge.md (the table) and RUN_DIR/scores.json
(`label_free_<k>`, `w0_mean_<k>`, `w0_ratio_<k>` for each step count k), which
`tools/sweep.py --aggregate` averages over seeds.
"""

import argparse
import json
import sys
from pathlib import Path

from sweep import SCORES


def score(run_dir: Path, steps: tuple[int, ...], samples: int, weights: str | None) -> dict[str, float]:
    """The label-free map and each class at w = 0, scored against the whole density."""
    from flowmap_core import runs
    from flowmap_core.evaluation import evaluate

    bindings = [f"evaluate.step_counts = {tuple(steps)!r}", "evaluate.guidance_scales = ()"]
    bindings.append(f"evaluate.num_samples = {samples}")
    trainer = runs.open_run(run_dir, bindings)
    spec = runs.build_eval_spec()
    data, cond = trainer.spec.dataset, trainer.spec.conditioning
    if not getattr(data, "num_classes", None) or "guidance" not in cond.unconditional():
        raise SystemExit(f"guided_edge: {run_dir} is not a guided run (conditioning.guided on labelled data)")
    name = weights or runs.headline_weights(trainer)
    free = runs.flow_maps(trainer, [name])[name]  # the null class at w = 1
    maps = {"label-free (null class, w = 1)": free}
    for label in range(data.num_classes):
        at_edge = {k: v.to(trainer.device) for k, v in cond.given(label, 0.0).items()}
        maps[f"class {label}, w = 0"] = free.with_cond(**at_edge)
    device, dtype = trainer.device, trainer.dtype
    result = evaluate(spec, maps, data, interpolant=trainer.spec.interpolant, device=device, dtype=dtype)
    table = result.table()
    scores: dict[str, float] = {}
    for k in steps:
        label_free = result.scores["label-free (null class, w = 1)"][k]
        w0 = sum(result.scores[f"class {c}, w = 0"][k] for c in range(data.num_classes)) / data.num_classes
        scores |= {f"label_free_{k}": label_free, f"w0_mean_{k}": w0, f"w0_ratio_{k}": w0 / label_free}
    mean_row = " | ".join(f"{scores[f'w0_mean_{k}']:.4f}" for k in steps)
    ratio_row = " | ".join(f"{scores[f'w0_ratio_{k}']:.2f}" for k in steps)
    text = (
        f"Weights {name}, {samples:,} samples per row, every row against the whole density.\n\n{table}\n"
        f"| labelled at w = 0, mean over classes | {mean_row} |\n"
        f"| ratio to the label-free map | {ratio_row} |\n"
    )
    (run_dir / "guided_edge.md").write_text(text)
    (run_dir / SCORES).write_text(json.dumps(scores, indent=1))
    print(text)
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--weights", default=None, help="default: the run's first EMA")
    args = parser.parse_args(argv)
    from flowmap_core.errors import FlowmapError

    for run_dir in args.run_dirs:
        try:
            score(run_dir, tuple(args.steps), args.samples, args.weights)
        except FlowmapError as error:
            raise SystemExit(f"guided_edge: error: {error}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
