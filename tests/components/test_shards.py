"""Image shards streamed into the trainer: round trip, URLs, rank x worker split, resume, bad input."""

import json
import math
import re
import shutil
import uuid

import fsspec
import numpy as np
import pytest
import torch
from webdataset import TarWriter

from flowmap_components.datasets.shard_format import DataError, encode_png, write_shards
from flowmap_components.datasets.shards import Shards
from flowmap_core import cli, config, runs
from flowmap_core.protocols import StreamingDataset, StreamRequest
from flowmap_core.trainer import Trainer

SMOKE = str(config.GIN_DIR / "smoke" / "checkerboard_lsd.gin")
SHARDS, PER_SHARD, SIZE = 4, 12, 8
COUNT = SHARDS * PER_SHARD


def image(index: int) -> np.ndarray:
    """An 8x8 gray image that carries its index in its first two pixels, and its class in its brightness."""
    pixels = np.full((SIZE, SIZE), 40 + 80 * (index % 3), dtype=np.uint8)
    pixels[0, 0], pixels[0, 1] = index % 256, index // 256
    return pixels


def write(directory: str, count: int = COUNT, per_shard: int = PER_SHARD) -> None:
    write_shards(directory, ((image(i), i % 3) for i in range(count)), classes=["a", "b", "c"], per_shard=per_shard)


def indices(batch) -> list[int]:
    pixels = ((batch.x1[:, 0, 0, :2] + 1) * 127.5).round().to(torch.int64)
    return (pixels[:, 0] + 256 * pixels[:, 1]).tolist()


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("shards") / "train")
    write(directory)
    return directory


def test_round_trip_pixels_labels_and_manifest(tmp_path):
    rng = np.random.default_rng(0)
    gray = [rng.integers(0, 256, (5, 7), dtype=np.uint8) for _ in range(7)]
    rgb = [rng.integers(0, 256, (5, 7, 3), dtype=np.uint8) for _ in range(7)]
    for name, images, labels in [("gray", gray, [i % 2 for i in range(7)]), ("rgb", rgb, None)]:
        directory = str(tmp_path / name)
        classes = ["x", "y"] if labels else None
        manifest = write_shards(directory, zip(images, labels or [None] * 7, strict=True), classes=classes, per_shard=3)
        assert manifest.counts == (3, 3, 1) and manifest.count == 7
        dataset = Shards(url=directory)
        stacked = np.stack(images).reshape(7, 5, 7, -1).transpose(0, 3, 1, 2)
        assert dataset.data_shape == stacked.shape[1:] and dataset.num_classes == (2 if labels else None)
        batch = dataset.read()
        assert torch.equal(((batch.x1 + 1) * 127.5).round().to(torch.uint8), torch.from_numpy(stacked))
        assert batch.label is None if labels is None else batch.label.tolist() == labels
        values = stacked.transpose(1, 0, 2, 3).reshape(stacked.shape[1], -1) / 255.0
        assert np.allclose(manifest.mean, values.mean(axis=1), atol=1e-6)
        assert np.allclose(manifest.std, values.std(axis=1), atol=1e-6)
        assert isinstance(dataset, StreamingDataset)
        assert dataset.read(4).x1.shape == (4, *dataset.data_shape)


@pytest.mark.parametrize("scheme", ["path", "file", "memory"])
def test_streams_from_a_path_and_fsspec_urls(scheme, shard_dir):
    if scheme == "memory":
        url = f"memory://flowmap-tests/{uuid.uuid4().hex}/train"
        write(url)
    else:
        url = shard_dir if scheme == "path" else f"file://{shard_dir}"
    dataset = Shards(url=url)
    seen = [i for batch in dataset.stream(StreamRequest(batch_size=5, seed=0), epochs=1) for i in indices(batch)]
    assert sorted(seen) == list(range(COUNT)) and seen != sorted(seen), "every example once, shuffled"
    endless = dataset.stream(StreamRequest(batch_size=5, seed=0))
    more = [i for _ in range(2 * COUNT // 5) for i in indices(next(endless))]
    assert len(more) > COUNT, "the training stream does not end"


def test_a_pattern_selects_shards(shard_dir):
    dataset = Shards(url=f"{shard_dir}/shard-{{000001..000002}}.tar")
    assert dataset.count == 2 * PER_SHARD
    assert indices(dataset.read()) == list(range(PER_SHARD, 3 * PER_SHARD))


def test_two_ranks_with_two_workers_see_disjoint_samples_covering_the_set(shard_dir):
    dataset = Shards(url=shard_dir, workers=2, shuffle_buffer=4)
    per_reader = []
    for rank in range(2):
        request = StreamRequest(batch_size=4, seed=3, rank=rank, world_size=2)
        per_reader.append([i for batch in dataset.stream(request, epochs=1) for i in indices(batch)])
    first, second = set(per_reader[0]), set(per_reader[1])
    assert len(per_reader[0]) == len(first) and len(per_reader[1]) == len(second), "no repeats within a rank"
    assert not first & second, "the ranks read disjoint examples"
    assert first | second == set(range(COUNT)), "together they read the whole set"


def test_the_stream_is_a_function_of_seed_rank_and_step(shard_dir):
    dataset = Shards(url=shard_dir, workers=2, shuffle_buffer=6)

    def first_batches(**fields):
        stream = dataset.stream(StreamRequest(batch_size=6, **fields))
        return [indices(next(stream)) for _ in range(3)]

    assert first_batches(seed=0, step=0) == first_batches(seed=0, step=0)
    assert first_batches(seed=0, step=0) != first_batches(seed=0, step=40)
    assert first_batches(seed=0, step=0) != first_batches(seed=1, step=0)


def _shard_bindings(url: str) -> list[str]:
    return [
        "train.dataset = @dataset.shards()",
        f"dataset.shards.url = '{url}'",
        "dataset.shards.shuffle_buffer = 8",
        "train.batch_size = 8",
        "train.steps = 6",
        "train.checkpoint_every = 3",
        "backbone.mlp.width = 16",
        "backbone.mlp.space_octaves = 0",
    ]


def _trainer(url, run_dir, **kwargs):
    config.parse([SMOKE], _shard_bindings(url))
    return Trainer(runs.build_spec(), run_dir, progress=False, **kwargs)


def test_resume_restarts_the_stream_from_the_step_and_is_reproducible(shard_dir, tmp_path):
    """The documented decision: a resumed run reads the stream reseeded by (seed, rank, step);
    it is not a replay of the interrupted stream, and two resumes of one checkpoint agree."""
    interrupted = _trainer(shard_dir, tmp_path / "a")
    interrupted.fit(until=3)
    continued = indices(interrupted.draw().batch)  # the stream the uninterrupted run would read
    for copy in ("b", "c"):
        shutil.copytree(tmp_path / "a", tmp_path / copy)
    reseeded = Shards(url=shard_dir, shuffle_buffer=8).stream(StreamRequest(batch_size=8, seed=0, step=3))
    expected = indices(next(reseeded))
    finals = []
    for copy in ("b", "c"):
        resumed = _trainer(shard_dir, tmp_path / copy, resume=True)
        assert resumed.step == 3
        assert indices(resumed.draw().batch) == expected
        resumed = _trainer(shard_dir, tmp_path / copy, resume=True)
        resumed.fit()
        finals.append(torch.cat([p.detach().flatten() for p in resumed.net.parameters()]))
    assert expected != continued
    assert torch.equal(finals[0], finals[1])


def test_smoke_training_on_shards_learns(shard_dir, tmp_path):
    run_dir = tmp_path / "run"
    bindings = _shard_bindings(shard_dir) + ["train.steps = 40", "train.log_every = 10", "dataset.shards.workers = 2"]
    args = ["train", SMOKE, "--run-dir", str(run_dir), "--no-eval", "--no-progress"]
    assert cli.main(args + [arg for b in bindings for arg in ("--gin", b)]) == 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["flow_matching"] for r in records]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.95 * losses[0], losses


def _raw_shard(directory: str, name: str, samples: list[dict]) -> None:
    with fsspec.open(f"{directory}/{name}", "wb") as f:
        writer = TarWriter(f)
        for sample in samples:
            writer.write(sample)
        writer.close()


def _broken(tmp_path, kind: str) -> tuple[str, list[str]]:
    """A shard set broken in one way, and the extra bindings that read it."""
    directory = str(tmp_path / kind)
    write(directory)
    keys = [f"{999 + i:09d}" for i in range(PER_SHARD)]
    if kind == "undecodable":
        _raw_shard(directory, "shard-000002.tar", [{"__key__": k, "cls": b"0", "png": b"not a png"} for k in keys])
    elif kind == "mixed_sizes":
        odd = encode_png(np.zeros((SIZE + 1, SIZE), dtype=np.uint8))
        _raw_shard(directory, "shard-000002.tar", [{"__key__": k, "cls": b"0", "png": odd} for k in keys])
    elif kind == "count_mismatch":
        manifest = json.loads((tmp_path / kind / "manifest.json").read_text())
        manifest["counts"][2] += 1
        manifest["count"] += 1
        (tmp_path / kind / "manifest.json").write_text(json.dumps(manifest))
    elif kind == "missing_shard":
        (tmp_path / kind / "shard-000001.tar").unlink()
    return directory, ["dataset.shards.shuffle_buffer = 1"]


BAD = {
    "missing path": (
        lambda tmp: (str(tmp / "nowhere"), []),
        r"there is no manifest\.json at '.*nowhere/manifest\.json'",
    ),
    "missing bucket": (lambda tmp: ("memory://no-such-bucket/train", []), r"no manifest\.json at 'memory://no-such"),
    "unknown protocol": (lambda tmp: ("nosuchproto://bucket/train", []), r"cannot open 'nosuchproto://.*"),
    "pattern matches nothing": (
        lambda tmp: (_broken(tmp, "ok")[0] + "/shard-{000007..000009}.tar", []),
        r"the pattern 'shard-\{000007\.\.000009\}\.tar' matches no shard .* \(it lists 4: shard-000000\.tar",
    ),
    "undecodable example": (
        lambda tmp: _broken(tmp, "undecodable"),
        r"shard '.*shard-000002\.tar', example '000000999': undecodable image",
    ),
    "mixed image sizes": (
        lambda tmp: _broken(tmp, "mixed_sizes"),
        r"example '000000999': an image of 1x9x8 \(mode L\), but the manifest says 1x8x8",
    ),
    "manifest disagrees with a shard": (
        lambda tmp: _broken(tmp, "count_mismatch"),
        r"shard '.*shard-000002\.tar' holds 12 examples, but the manifest says 13",
    ),
    "a listed shard is missing": (lambda tmp: _broken(tmp, "missing_shard"), r"1 shard\(s\) .* missing .*000001"),
    "fewer shards than readers": (
        lambda tmp: (_broken(tmp, "ok")[0], ["dataset.shards.workers = 5"]),
        r"4 shard\(s\) at .* cannot feed 1 process\(es\) x 5 reader\(s\) each",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_naming_the_culprit(case, tmp_path, capsys):
    make, pattern = BAD[case]
    url, extra = make(tmp_path)
    bindings = _shard_bindings(url) + ["train.steps = 8", "dataset.shards.workers = 2"] + extra
    args = ["train", SMOKE, "--run-dir", str(tmp_path / "run"), "--no-eval", "--no-progress"]
    assert cli.main(args + [arg for b in bindings for arg in ("--gin", b)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("flowmap: error:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    assert re.search(pattern, errors[0]), errors[0]


def test_writer_refuses_mixed_sizes(tmp_path):
    images = [(np.zeros((4, 4), np.uint8), None), (np.zeros((5, 4), np.uint8), None)]
    with pytest.raises(DataError, match="example 1 is 1x5x4, the first was 1x4x4"):
        write_shards(str(tmp_path / "x"), images)


def _faulty(tmp_path) -> str:
    """Shards with a corrupt image (shard 1, one example) and a truncated shard (shard 2, cut mid-way)."""
    directory = str(tmp_path / "faulty")
    write(directory)
    good = [{"__key__": f"{500 + i:09d}", "cls": b"0", "png": encode_png(image(500 + i))} for i in range(PER_SHARD)]
    good[3]["png"] = b"not a png"
    _raw_shard(directory, "shard-000001.tar", good)
    path = tmp_path / "faulty" / "shard-000002.tar"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return directory


@pytest.mark.parametrize("workers", [0, 2])
def test_skip_trains_on_past_a_corrupt_image_and_a_truncated_shard(tmp_path, workers):
    url = _faulty(tmp_path)
    run_dir = tmp_path / "run"
    bindings = _shard_bindings(url) + [
        "dataset.shards.on_error = 'skip'",
        "train.steps = 12",
        "train.log_every = 6",
        f"dataset.shards.workers = {workers}",
    ]
    args = ["train", SMOKE, "--run-dir", str(run_dir), "--no-eval", "--no-progress"]
    with pytest.warns(UserWarning, match="skipped"):
        assert cli.main(args + [arg for b in bindings for arg in ("--gin", b)]) == 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 12 and records[-1]["skipped_samples"] >= 2  # the image and the shard's rest
    assert records[-1]["skipped_samples"] <= 3 * (1 + PER_SHARD)  # at most three passes over the faults


def test_skips_past_the_cap_stop_with_one_line(tmp_path, capsys):
    url = _faulty(tmp_path)
    bindings = _shard_bindings(url) + [
        "dataset.shards.on_error = 'skip'",
        "dataset.shards.max_skipped = 1",
        "train.steps = 40",
    ]
    args = ["train", SMOKE, "--run-dir", str(tmp_path / "run"), "--no-eval", "--no-progress"]
    assert cli.main(args + [arg for b in bindings for arg in ("--gin", b)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("flowmap: error:")]
    assert len(errors) == 1 and "more than dataset.shards.max_skipped = 1" in errors[0], errors
