"""Score a guided run's w = 0 edge against its label-free map, at the same sample count.

    python tools/guided_edge.py RUN_DIR [--steps 1 2 4] [--samples 200000] [--weights ema_0.999]

At guidance w = 0 the guided velocity b^0 = b(x, null) carries no class, so every class's
samples at w = 0 should be the whole density, as the label-free map's are (the null class
at w = 1). This samples the label-free map and every class at w = 0 from the same noise,
scores each against the whole density with the run's metric (the histogram KL on a 2D
ring), and writes RUN_DIR/guided_edge.md (the table) and RUN_DIR/scores.json
(tool scores `label_free_<k>`, `w0_mean_<k>`, `w0_ratio_<k>` for each step count k), which
`flowmap sweep` averages over seeds.
"""

import argparse
import sys
from pathlib import Path

from flowmap_core import report
from flowmap_core.evaluation import evaluate
from flowmap_core.run_sampler import RunSampler
from flowmap_core.rundir import RunDir


def score(run_dir: Path, steps: tuple[int, ...], samples: int, weights: str | None) -> dict[str, float]:
    """The label-free map and each class at w = 0, scored against the whole density."""
    bindings = [f"evaluate.step_counts = {tuple(steps)!r}", "evaluate.guidance_scales = ()"]
    bindings.append(f"evaluate.num_samples = {samples}")
    sampler = RunSampler.open(run_dir, weights, bindings)
    trainer, data = sampler.trainer, sampler.dataset
    if not getattr(data, "num_classes", None) or "guidance" not in trainer.spec.conditioning.unconditional():
        raise SystemExit(f"guided_edge: {run_dir} is not a guided run (conditioning.guided on labelled data)")
    maps = {"label-free (null class, w = 1)": sampler.X}
    maps |= {f"class {label}, w = 0": sampler.given(label, 0.0) for label in range(data.num_classes)}
    device, dtype = trainer.device, trainer.dtype
    result = evaluate(sampler.spec, maps, data, interpolant=trainer.spec.interpolant, device=device, dtype=dtype)
    table = report.score_table(result.to_table())
    scores: dict[str, float] = {}
    for k in steps:
        label_free = result.scores["label-free (null class, w = 1)"][k]
        w0 = sum(result.scores[f"class {c}, w = 0"][k] for c in range(data.num_classes)) / data.num_classes
        scores |= {f"label_free_{k}": label_free, f"w0_mean_{k}": w0, f"w0_ratio_{k}": w0 / label_free}
    columns = [report.column_name(k, "steps") for k in steps]
    summary = report.table(
        ["over the classes", *columns],
        [
            ["labelled at w = 0, mean over classes", *[report.score(scores[f"w0_mean_{k}"]) for k in steps]],
            ["ratio to the label-free map", *[f"{scores[f'w0_ratio_{k}']:.2f}" for k in steps]],
        ],
    )
    intro = f"Weights {sampler.weights}, {samples:,} samples per row, every row against the whole density."
    text = f"{intro}\n\n{table}\n\n{summary}\n"
    run = RunDir(run_dir)
    run.write("guided_edge.md", text)
    run.add_tool_scores(scores)
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
