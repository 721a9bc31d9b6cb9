"""Write the synthetic data the image smoke configs (`gin/smoke/*`) read, in seconds.

    python tools/make_smoke_data.py [ROOT]          (default: runs/smoke_data)

For each image shape of the shipped datasets (gray 28x28 as Fashion-MNIST, RGB 32x32 as
CIFAR-10, RGB 64x64 as CelebA-64), `ROOT/<shape>/train/` and `test/` hold labelled blob
images (`components/datasets/synthetic_images.py`) and `ROOT/<shape>/feature_net/` a tiny
classifier for `features.classifier`. Run it from the directory you run the smoke configs
in (their URLs are relative); the test suite does the same in its temporary directory.
A shape whose directory already holds a feature net is left as it is.
"""

import argparse
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from flowmap_components.datasets.shards import read_images  # noqa: E402
from flowmap_components.datasets.synthetic_images import write_synthetic  # noqa: E402

SHAPES = {"gray28": (1, 28, 28), "rgb32": (3, 32, 32), "rgb64": (3, 64, 64)}


def _feature_net_tool():
    spec = importlib.util.spec_from_file_location("train_feature_net", REPO / "tools" / "train_feature_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make(root: str | Path = "runs/smoke_data") -> Path:
    """Write every shape's shards and feature net under `root` (skipping finished shapes)."""
    root = Path(root)
    tool = _feature_net_tool()
    settings = tool.Settings(epochs=1, batch=64, widths=(8, 16), depth=1, dim=16)
    for name, shape in SHAPES.items():
        directory = root / name
        if (directory / "feature_net" / "config.json").is_file():
            continue
        train, test = write_synthetic(str(directory), shape)
        tool.build_feature_net(
            read_images(str(directory / "train")),
            read_images(str(directory / "test")),
            classes=list(train.classes),
            data_hash=f"smoke-{name}",
            settings=settings,
            out=str(directory / "feature_net"),
            force=True,
            progress=False,
            log=lambda *args, **kwargs: None,
        )
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="runs/smoke_data")
    root = make(parser.parse_args().root)
    print(f"smoke data written to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
