"""Is a run bound by its data or by its compute? The shard stream's rate against the step's.

    python tools/bench_data.py [--url SHARDS] [--config CONFIG.gin] [--gin BINDING ...]
                               [--workers 0 1 2] [--batches 40]

For each number of loader workers, in this one process (so machine load cancels in the
ratios), three rates in samples per second:

- stream: `dataset.shards` alone, batches of the config's `train.batch_size`, after two
  warm-up batches (the shuffle buffer filling, workers starting);
- step: the training step of `--config` on one batch drawn beforehand (pure compute);
- train: the step fed by the stream, `optimise(draw())`, as `flowmap train` runs it.

If train is well below step, data loading (or its workers taking cores from the step)
bounds the run. Without `--url`, 12 shards of 28x28 gray blob images (Fashion-MNIST's size,
24,000 examples, `components/datasets/synthetic_images.py`) are written to a temporary
directory first.
"""

import argparse
import statistics
import tempfile
import time

import torch

from flowmap_components.datasets.shards import Shards
from flowmap_components.datasets.synthetic_images import write_synthetic
from flowmap_core import config, report, runs
from flowmap_core.protocols import StreamRequest
from flowmap_core.trainer import Trainer

DEFAULT_CONFIG = "experiments/fashion_mnist_lsd.gin"


def write_synthetic_shards(directory: str) -> str:
    """24,000 labelled 28x28 gray blob images in 12 shards: Fashion-MNIST's size and layout."""
    write_synthetic(directory, (1, 28, 28), train=24_000, test=12, per_shard=2_000)
    return f"{directory}/train"


def per_second(samples: int, seconds: float) -> float:
    return samples / seconds if seconds > 0 else float("nan")


def stream_rate(url: str, workers: int, batch: int, batches: int) -> float:
    stream = Shards(url=url, workers=workers).stream(StreamRequest(batch_size=batch, seed=0))
    for _ in range(2):
        next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return per_second(batch * batches, time.perf_counter() - start)


def trainer_for(config_file: str, bindings: list[str], url: str, workers: int) -> Trainer:
    extra = [
        "train.dataset = @dataset.shards()",
        f"dataset.shards.url = '{url}'",
        f"dataset.shards.workers = {workers}",
    ]
    config.parse([config_file], [*bindings, *extra])
    return Trainer(runs.build_spec(), progress=False)


def step_rate(trainer: Trainer, steps: int) -> float:
    inputs = trainer.draw()
    trainer.optimise(inputs)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        trainer.optimise(inputs)
        times.append(time.perf_counter() - start)
    return per_second(trainer.local_batch, statistics.median(times))


def train_rate(trainer: Trainer, steps: int) -> float:
    for _ in range(2):
        trainer.optimise(trainer.draw())
    start = time.perf_counter()
    for _ in range(steps):
        trainer.optimise(trainer.draw())
    return per_second(trainer.local_batch * steps, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a shard directory (default: synthetic Fashion-MNIST-sized shards)")
    parser.add_argument(
        "--config", default=DEFAULT_CONFIG, help=f"the run whose step is timed (default {DEFAULT_CONFIG})"
    )
    parser.add_argument("--gin", action="append", default=[], metavar="BINDING", help="extra binding (repeatable)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batches", type=int, default=40, help="batches (and steps) timed per measurement")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as scratch:
        url = args.url or write_synthetic_shards(scratch)
        rows = []
        for workers in args.workers:
            trainer = trainer_for(args.config, args.gin, url, workers)
            stream = stream_rate(url, workers, trainer.local_batch, args.batches)
            step = step_rate(trainer, args.batches)
            train = train_rate(trainer, args.batches)
            rows.append((workers, stream, step, train))
        dataset = Shards(url=url)
    shape = "x".join(map(str, dataset.data_shape))
    print(f"Data against compute ({args.config}, batch {trainer.local_batch}, {shape} images, {dataset.count:,} in")
    print(f"{len(dataset.shard_names)} shards, {torch.get_num_threads()} threads; samples/s)\n")
    head = ["workers", "stream", "step (compute only)", "train (step fed by the stream)", "train / step"]
    cells = [
        [w, f"{stream:,.0f}", f"{step:,.0f}", f"{train:,.0f}", f"{train / step:.2f}"] for w, stream, step, train in rows
    ]
    print(report.table(head, cells))


if __name__ == "__main__":
    main()
