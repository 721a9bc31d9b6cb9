"""The `flowmap` command: train, sample, eval, components, sweep, report.

    flowmap train [CONFIG.gin] [--gin 'BINDING' ...] [--run-dir DIR] [--resume] [--force]
    flowmap sample RUN_DIR --steps K --n N --out FILE.npy
    flowmap eval RUN_DIR                 (rewrites RUN_DIR/scores.json, report.md and its figures)
    flowmap components
    flowmap sweep CONFIG.gin ... --out DIR [--grid NAME VALUE ...] [--seeds 0 1 2]
    flowmap report SWEEP_DIR ... [--out docs/sweeps.md]

A bad config or argument is one `flowmap: error:` line (exit status 2); `--debug` (before
the subcommand) or FLOWMAP_TRACEBACK=1 shows the full traceback instead.
`--typecheck` (before the subcommand) turns on runtime shape checks; `--import MODULE`
registers components from your own module (repeatable; `flowmap_components` is always loaded),
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
    sample.add_argument("--seed", type=int, default=None, help="noise seed (default: the run's evaluate.seed)")

    encode = sub.add_parser(
        "encode", help="carry data to noise (k jumps back from t = 1 to 0) and score the round trip"
    )
    encode.add_argument("run_dir", type=Path)
    encode.add_argument("--steps", type=int, required=True, help="flow-map jumps each way")
    encode.add_argument("--out", type=Path, required=True, help="output .npy file of the noise")
    encode.add_argument("--data", type=Path, default=None, help="a .npy of data points (default: the run's data)")
    encode.add_argument("--n", type=int, default=10_000, help="data points drawn when no --data (default 10,000)")
    encode.add_argument("--weights", default=None, help="ema_<rate> or online (default: the first EMA)")
    encode.add_argument(
        "--seed", type=int, default=None, help="seed of the drawn data and noise (default: evaluate.seed)"
    )

    evaluate = sub.add_parser("eval", help="score a run at 1, 2, 4, 8, 16 steps (EMA and online weights)")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument(
        "--gin", action="append", default=[], metavar="BINDING", help="e.g. evaluate.num_samples=50000"
    )
    evaluate.add_argument(
        "--weights", action="append", default=None, help="ema_<rate> or online (repeatable; default: all)"
    )

    sub.add_parser("components", help="list every component family and its registered components")

    sweep = sub.add_parser("sweep", help="train a grid of configs x bindings x seeds, then gather their scores")
    _sweep_arguments(sweep)

    pages = sub.add_parser("report", help="a results page (Markdown) from sweep directories")
    pages.add_argument("sweeps", nargs="+", type=Path, help="directories written by `flowmap sweep`")
    pages.add_argument("--out", type=Path, default=Path("docs/sweeps.md"))
    pages.add_argument("--title", default="Sweeps: mean ± std over training seeds")
    return parser


def _sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `flowmap sweep` (flowmap_core.sweep)."""
    parser.add_argument("configs", nargs="+", help="gin files (one axis of the grid)")
    parser.add_argument("--out", type=Path, required=True, help="sweep directory: OUT/<cell>/seed<k>, summary.*")
    parser.add_argument(
        "--grid", nargs="+", action="append", default=[], metavar=("NAME", "VALUE"), help="an axis: binding and values"
    )
    parser.add_argument("--gin", action="append", default=[], metavar="BINDING", help="a binding for every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="processes at once")
    parser.add_argument("--threads", type=int, default=None, help="OMP threads per process (default: cores / jobs)")
    parser.add_argument("--nice", type=int, default=0, help="run each process under nice -n NICE")
    parser.add_argument("--no-eval", action="store_true", help="train only (done = trained to the last step)")
    parser.add_argument("--print-commands", action="store_true", help="print each pending run's command and exit")
    parser.add_argument("--aggregate", action="store_true", help="only gather the scores of the runs already there")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.typecheck:
        os.environ["FLOWMAP_TYPECHECK"] = "1"  # read once, when flowmap_core.typing is first imported
    imports = ["flowmap_components", *args.imports]
    if args.imports and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the console script, unlike `python -m`, leaves it out
    handlers = {
        "train": _train,
        "sample": _sample,
        "eval": _eval,
        "encode": _encode,
        "components": _components,
        "sweep": _sweep,
        "report": _report,
    }
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
    from tqdm import tqdm

    from flowmap_core import config, distributed, runs
    from flowmap_core.errors import TrainingError
    from flowmap_core.trainer import Interrupted, Trainer

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
    eval_spec = None if args.no_eval else runs.build_eval_spec()  # a bad evaluation binding fails now
    written = ([] if args.config is None else [config.resolve_config_file(args.config).read_text()]) + list(args.gin)
    context = distributed.setup(spec.device)

    def warn_unused() -> None:
        if context.is_main:
            for name in config.unused_bindings(written, evaluated=eval_spec is not None):
                tqdm.write(f"flowmap: warning: {name} is bound, but this run never reads it", file=sys.stderr)

    try:
        run_dir = args.run_dir or _default_run_dir(Path(files[0]).stem, context)
        trainer = Trainer(
            spec,
            run_dir,
            context=context,
            resume=args.resume,
            force=args.force,
            progress=not args.no_progress,
            after_first_step=warn_unused,
        )
        if context.is_main:
            print(f"flowmap: training {spec.steps:,} steps into {run_dir}", file=sys.stderr)
        try:
            trainer.fit()
        except Interrupted as stop:
            print(f"flowmap: {stop}", file=sys.stderr)
            return 130
        if context.is_main:
            if args.no_eval:
                runs.record_budget(trainer, run_dir)
            else:
                scores = runs.score_run(trainer, run_dir, eval_spec, [runs.headline_weights(trainer)])
                _print_scores(scores)
                print(f"flowmap: report written to {run_dir / 'report.md'}", file=sys.stderr)
    finally:
        distributed.teardown(context, completed=sys.exc_info()[0] is None)
    return 0


def _default_run_dir(stem: str, context) -> Path:
    stamp = [time.strftime("%Y%m%d-%H%M%S")]
    if context.distributed:
        import torch.distributed as dist

        dist.broadcast_object_list(stamp, src=0)
    return Path("runs") / f"{stem}-{stamp[0]}"


def _print_scores(scores) -> None:
    from flowmap_core import report

    for table in scores.tables:
        print(report.score_table(table))


def _sample(args: argparse.Namespace, imports: list[str]) -> int:
    import numpy as np

    from flowmap_core.run_sampler import RunSampler

    sampler = RunSampler.open(args.run_dir, args.weights, imports=imports)
    x0 = sampler.noise(args.n, args.seed)
    steps = None if args.ode == "dopri5" else args.steps
    out = sampler.sample(x0, steps, ode=args.ode, X=sampler.given(args.label, args.guidance))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    images = sampler.images(out.x)
    np.save(args.out, images.float().numpy())
    decoded = ", decoded by the dataset's VAE" if images is not out.x else ""
    print(
        f"flowmap: {args.n} samples ({sampler.weights}, {out.nfe} network evaluations each{decoded}) "
        f"written to {args.out}"
    )
    return 0


def _encode(args: argparse.Namespace, imports: list[str]) -> int:
    import numpy as np
    import torch

    from flowmap_core import round_trip
    from flowmap_core.run_sampler import RunSampler
    from flowmap_core.rundir import RunDir

    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    sampler = RunSampler.open(args.run_dir, args.weights, imports=imports)
    device, dtype = sampler.trainer.device, sampler.trainer.dtype
    if args.data is None:
        x1 = sampler.data(args.n, args.seed)
    else:
        x1 = torch.from_numpy(np.load(args.data)).to(dtype)
        shape = tuple(sampler.dataset.data_shape)
        if tuple(x1.shape[1:]) != shape:
            raise ValueError(f"{args.data} holds points of shape {tuple(x1.shape[1:])}; the run's data is {shape}")
    x1 = x1.to(device=device, dtype=dtype)
    x0 = sampler.noise(len(x1), args.seed)
    noise = torch.cat([round_trip.encode(sampler.X, part, args.steps) for part in x1.split(sampler.spec.chunk)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, noise.float().cpu().numpy())
    errors = round_trip.round_trips(sampler.X, x0, x1, args.steps)
    scores = {f"round_trip_{kind}_k{args.steps}": v for kind, v in errors.items()}
    exact = round_trip.exact_map(sampler.trainer.spec)
    against_exact = ""
    if exact is not None:
        scores[f"encode_error_k{args.steps}"] = error = round_trip.encoding_error(noise, exact, x1)
        against_exact = f"; against the exact map's encoding {error:.4g}"
    RunDir(args.run_dir).add_tool_scores(scores)
    print(
        f"flowmap: {len(x1)} points ({sampler.weights}) carried to noise in {args.steps} "
        f"jump{'s' if args.steps > 1 else ''}, written to {args.out}; "
        f"round trip RMS error: data -> noise -> data {errors['data']:.4g}, noise -> data -> noise "
        f"{errors['noise']:.4g}{against_exact} (recorded in scores.json)"
    )
    return 0


def _eval(args: argparse.Namespace, imports: list[str]) -> int:
    from flowmap_core import runs

    trainer = runs.open_run(args.run_dir, bindings=args.gin, imports=imports)
    scores = runs.score_run(trainer, args.run_dir, runs.build_eval_spec(), args.weights)
    print(f"scores of {args.run_dir} at step {trainer.step:,}")
    _print_scores(scores)
    print(f"flowmap: report written to {args.run_dir / 'report.md'}", file=sys.stderr)
    return 0


def _sweep(args: argparse.Namespace, imports: list[str]) -> int:
    from flowmap_core import sweep

    return sweep.main(args, args.argv[args.argv.index("sweep") + 1 :])


def _report(args: argparse.Namespace, imports: list[str]) -> int:
    from flowmap_core import report

    report.sweep_page(args.sweeps, args.out, args.title)
    print(f"flowmap: report written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
