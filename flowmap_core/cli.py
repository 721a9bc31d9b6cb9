"""The `flowmap` command: train, sample, eval, components.

    flowmap train [CONFIG.gin] [--gin 'BINDING' ...] [--run-dir DIR] [--resume] [--force]
    flowmap sample RUN_DIR --steps K --n N --out FILE.npy
    flowmap eval RUN_DIR                 (rewrites RUN_DIR/report.md and its figures)
    flowmap components

A bad config or argument is one `flowmap: error:` line (exit status 2); `--debug` (before
the subcommand) or FLOWMAP_TRACEBACK=1 shows the full traceback instead.
`--typecheck` (before the subcommand) turns on runtime shape checks; `--import MODULE`
registers components from your own module (repeatable; `components` is always loaded),
found as `python -m` finds it: in the current directory first, then on sys.path.
Under torchrun, `python -m flowmap_core.cli train ...` trains on every process.
"""

import argparse
import os
import sys
import time
from pathlib import Path

DEFAULT_CONFIG = "experiments/checkerboard_lsd.gin"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowmap", description="Few-step generative models as two-time flow maps.")
    parser.add_argument("--typecheck", action="store_true", help="check tensor shapes at runtime (slower)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import components from MODULE (the current directory first)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a flow map, then evaluate it and write a report")
    train.add_argument("config", nargs="?", help=f"gin file (default: gin/{DEFAULT_CONFIG})")
    train.add_argument("--gin", action="append", default=[], metavar="BINDING", help="extra gin binding (repeatable)")
    train.add_argument("--run-dir", type=Path, help="run directory (default: runs/<config>-<time>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    train.add_argument("--force", action="store_true", help="resume even if the config changed")
    train.add_argument("--no-eval", action="store_true", help="skip the evaluation and report at the end")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    sample = sub.add_parser("sample", help="draw samples from a trained run")
    sample.add_argument("run_dir", type=Path)
    sample.add_argument("--steps", type=int, required=True, help="flow-map jumps (or ODE steps with --ode)")
    sample.add_argument("--n", type=int, required=True, help="number of samples")
    sample.add_argument("--out", type=Path, required=True, help="output .npy file")
    sample.add_argument("--weights", default=None, help="ema_<rate> or online (default: the first EMA)")
    sample.add_argument("--ode", default=None, help="integrate b_t = v_{t,t} with euler, heun, rk4 or dopri5 instead")
    sample.add_argument("--label", type=int, default=None, help="class to sample (conditional runs)")
    sample.add_argument("--guidance", type=float, default=1.0, help="guidance scale w (guided runs)")
    sample.add_argument("--seed", type=int, default=0)

    evaluate = sub.add_parser("eval", help="score a run at 1, 2, 4, 8, 16 steps (EMA and online weights)")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument(
        "--gin", action="append", default=[], metavar="BINDING", help="e.g. evaluate.num_samples=50000"
    )
    evaluate.add_argument(
        "--weights", action="append", default=None, help="ema_<rate> or online (repeatable; default: all)"
    )

    sub.add_parser("components", help="list every component family and its registered components")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.typecheck:
        os.environ["FLOWMAP_TYPECHECK"] = "1"  # read once, when flowmap_core.typing is first imported
    imports = ["components", *args.imports]
    if args.imports and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the console script, unlike `python -m`, leaves it out
    handlers = {"train": _train, "sample": _sample, "eval": _eval, "components": _components}
    try:
        return handlers[args.command](args, imports)
    except Exception as error:
        if args.debug or os.environ.get("FLOWMAP_TRACEBACK", "") not in ("", "0"):
            raise
        from flowmap_core.config import error_line

        line = error_line(error)
        if line is None:
            raise
        print(f"flowmap: error: {line}", file=sys.stderr)
        return 2


def _components(args: argparse.Namespace, imports: list[str]) -> int:
    from flowmap_core import config, registry

    config.import_components(imports)
    print(registry.describe(), end="")
    return 0


def _train(args: argparse.Namespace, imports: list[str]) -> int:
    from flowmap_core import config, distributed, report, runs
    from flowmap_core.trainer import Interrupted, Trainer, TrainingError

    if args.resume and args.run_dir is None:
        raise TrainingError("--resume needs --run-dir: the run to continue")
    if args.config is not None:
        files = [args.config]
    elif args.resume:
        files = [args.run_dir / "config.gin"]
    else:
        files = [DEFAULT_CONFIG]
    config.parse(files, args.gin, imports)
    spec = runs.build_spec()
    context = distributed.setup(spec.device)
    try:
        run_dir = args.run_dir or _default_run_dir(Path(files[0]).stem, context)
        trainer = Trainer(
            spec, run_dir, context=context, resume=args.resume, force=args.force, progress=not args.no_progress
        )
        if context.is_main:
            print(f"flowmap: training {spec.steps:,} steps into {run_dir}", file=sys.stderr)
        try:
            trainer.fit()
        except Interrupted as stop:
            print(f"flowmap: {stop}", file=sys.stderr)
            return 130
        if context.is_main and not args.no_eval:
            eval_spec = runs.build_eval_spec()
            result = runs.evaluate_run(trainer, eval_spec, [runs.headline_weights(trainer)])
            guided = runs.evaluate_guided_run(trainer, eval_spec)
            path = report.write(run_dir, trainer, result, spec.dataset, guided)
            print(result.table())
            if guided is not None:
                print(guided.table())
            print(f"flowmap: report written to {path}", file=sys.stderr)
    finally:
        distributed.teardown(context, completed=sys.exc_info()[0] is None)
    return 0


def _default_run_dir(stem: str, context) -> Path:
    stamp = [time.strftime("%Y%m%d-%H%M%S")]
    if context.distributed:
        import torch.distributed as dist

        dist.broadcast_object_list(stamp, src=0)
    return Path("runs") / f"{stem}-{stamp[0]}"


def _sample(args: argparse.Namespace, imports: list[str]) -> int:
    import numpy as np
    import torch

    from flowmap_core import runs, sampling

    trainer = runs.open_run(args.run_dir, imports=imports)
    weights = args.weights or runs.headline_weights(trainer)
    X = runs.flow_maps(trainer, [weights])[weights]
    if args.label is not None or args.guidance != 1.0:
        label = -1 if args.label is None else args.label
        cond = trainer.spec.conditioning.given(label, args.guidance)
        X = X.with_cond(**{k: v.to(trainer.device) for k, v in cond.items()})
    generator = torch.Generator(device=trainer.device).manual_seed(args.seed)
    shape = (args.n, *trainer.spec.dataset.data_shape)
    x0 = torch.randn(shape, generator=generator, device=trainer.device, dtype=trainer.dtype)
    if args.ode is None:
        sampler = runs.build_eval_spec().sampler
        out = sampler(X, x0, args.steps, interpolant=trainer.spec.interpolant, generator=generator)
    else:
        out = sampling.ode_sample(X.velocity, x0, solver=args.ode, steps=None if args.ode == "dopri5" else args.steps)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, out.x.float().cpu().numpy())
    print(f"flowmap: {args.n} samples ({weights}, {out.nfe} network evaluations each) written to {args.out}")
    return 0


def _eval(args: argparse.Namespace, imports: list[str]) -> int:
    from flowmap_core import report, runs

    trainer = runs.open_run(args.run_dir, bindings=args.gin, imports=imports)
    spec = runs.build_eval_spec()
    result = runs.evaluate_run(trainer, spec, args.weights)
    guided = runs.evaluate_guided_run(trainer, spec)
    print(f"{result.metric} of {args.run_dir} at step {trainer.step:,} ({result.num_samples:,} samples)")
    print(result.table())
    if guided is not None:
        print(f"\nclass-conditional {guided.metric} per guidance scale (mean over classes)")
        print(guided.table())
    path = report.write(args.run_dir, trainer, result, trainer.spec.dataset, guided)
    print(f"flowmap: report written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
