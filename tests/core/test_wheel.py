"""flowmap as a package: a wheel built from the sources, installed into a fresh virtual
environment outside the repository, trains a smoke config found inside the installed package
and lists every component, from another directory."""

import json
import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

from flowmap_core import config

REPO = config.GIN_DIR.parent
SOURCES = ["pyproject.toml", "README.md", "flowmap_core", "components", "gin"]


def run(command: list, cwd: Path, env: dict) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_wheel_installs_its_configs_and_runs_outside_the_repository(tmp_path):
    source = tmp_path / "source"  # built from a copy: the build leaves build/ and *.egg-info/ behind
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", "dist", str(source)]
    run(build, tmp_path, env)
    (wheel,) = (tmp_path / "dist").glob("flowmap-*.whl")

    # A fresh environment that sees this one's dependencies (torch, gin, ...) after its own
    # packages, but not this one's editable flowmap (.pth files of an added path are not run).
    venv.create(tmp_path / "env", with_pip=False)
    python = tmp_path / "env" / "bin" / "python"
    own = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env).strip()
    Path(own, "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run([python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheel)], tmp_path, env)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run([python, "-c", "import flowmap_core.config as c; print(c.__file__); print(c.GIN_DIR)"], elsewhere, env)
    module, gin_dir = where.split()
    assert Path(module).is_relative_to(tmp_path / "env") and not Path(module).is_relative_to(REPO)
    assert gin_dir == str(Path(module).parent / "configs")

    flowmap = tmp_path / "env" / "bin" / "flowmap"
    listed = run([flowmap, "components"], elsewhere, env)
    assert "objective:" in listed and "lsd" in listed
    steps = ["--gin", "train.steps = 4", "--gin", "train.checkpoint_every = 4", "--gin", "evaluate.num_samples = 400"]
    run([flowmap, "train", "smoke/checkerboard_lsd.gin", "--run-dir", "run", "--no-progress", *steps], elsewhere, env)
    scores = json.loads((elsewhere / "run" / "scores.json").read_text())
    assert scores["budget"]["steps"] == 4 and scores["tables"][0]["counts"] == [1, 2]
    assert (elsewhere / "run" / "report.md").is_file()


def test_a_config_is_named_the_same_in_a_checkout_and_an_installed_package():
    """`gin/experiments/x.gin` (as the README writes it) and `experiments/x.gin` name the same file,
    from any directory (the tests run outside the repository)."""
    expected = config.GIN_DIR / "experiments" / "checkerboard_lsd.gin"
    assert config.resolve_config_file("gin/experiments/checkerboard_lsd.gin") == expected
    assert config.resolve_config_file("experiments/checkerboard_lsd.gin") == expected
