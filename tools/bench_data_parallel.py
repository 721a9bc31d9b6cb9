"""Throughput of one process against N data-parallel processes (torchrun, gloo on CPU).

    python tools/bench_data_parallel.py [--config experiments/checkerboard_lsd.gin] [--steps 300]
                                        [--processes 2] [--threads 2]

Runs `flowmap train` twice on the same config and global batch, one after the other:
one process with `--threads` threads, then `--processes` processes under torchrun
sharing the same cores (threads / processes each). Reports steps/s and samples/s
(the median over the logged windows, the first one dropped as warm-up) and their ratio.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from flowmap_core import report
from flowmap_core.rundir import RunDir


def run(config: str, steps: int, processes: int, threads: int, run_dir: Path) -> list[dict]:
    flowmap = ["-m", "flowmap_core.cli", "train", config, "--run-dir", str(run_dir), "--no-eval", "--no-progress"]
    flowmap += ["--gin", f"train.steps = {steps}", "--gin", f"train.log_every = {max(steps // 6, 1)}"]
    flowmap += ["--gin", f"train.checkpoint_every = {steps}"]
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        command = launcher + flowmap
    else:
        command = [sys.executable, *flowmap]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(threads // processes, 1)), "FLOWMAP_TYPECHECK": "0"}
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return RunDir(run_dir).metric_records()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/checkerboard_lsd.gin")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for processes in (1, args.processes):
            records = run(args.config, args.steps, processes, args.threads, Path(tmp) / f"p{processes}")
            speed = statistics.median(r["steps_per_s"] for r in records[1:])
            rows.append((processes, max(args.threads // processes, 1), speed))
    batch = _batch_size(args.config)
    print(f"{args.config}, global batch {batch}, {args.steps} steps, {args.threads} cores\n")
    cells = [[p, t, f"{speed:.1f}", f"{speed * batch:,.0f}", f"{speed / rows[0][2]:.2f}x"] for p, t, speed in rows]
    print(report.table(["processes", "threads each", "steps/s", "samples/s", "vs 1 process"], cells))


def _batch_size(config_file: str) -> int:
    from flowmap_core import config, runs

    config.parse([config_file])
    return runs.build_spec().batch_size


if __name__ == "__main__":
    main()
