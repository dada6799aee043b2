"""Shared fixtures: tiny data sets, tiny configs, and a helper that runs the real Snakemake."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from wcgan.config import config_schema

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
BIN = Path(sys.executable).parent  # the environment's console scripts (wcgan, snakemake)


def pytest_sessionfinish(session, exitstatus):
    # "No tests collected" must fail the run, not pass it quietly.
    if session.testscollected == 0:
        session.exitstatus = 1


def schema_defaults(schema: dict) -> dict:
    """Every key's default, nested as a config: what the workflow fills in from the schema."""
    out = {}
    for name, spec in schema.get("properties", {}).items():
        if "properties" in spec and spec.get("default") == {}:
            out[name] = schema_defaults(spec)
        elif "default" in spec:
            out[name] = copy.deepcopy(spec["default"])
    return out


def default_config() -> dict:
    """The default run's config with every key, as the workflow sees it: config/config.yaml over
    the schema's defaults."""
    with open(REPO / "config" / "config.yaml", encoding="utf-8") as fh:
        return merged(schema_defaults(config_schema()), yaml.safe_load(fh))


def merged(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


TINY = {
    "run": "tiny",
    "labels_per_job": 1,
    "data": {"labels": ["0", "1", "2"]},
    # An iteration budget alone: tests count iterations and rounds, which a wall-clock budget
    # would cut short on a loaded machine.
    "train": {"iterations": 12, "seconds": None, "width": 8, "z_dim": 16, "batch_size": 16, "log_seconds": 1},
    "sampling": {"per_label": 40},
    "metrics": {"classifier": {"epochs": 2, "batch_size": 64, "width": 8}},
    "figures": {"grid_samples": 16, "merged_per_label": 6},
    "resources": {"classifier_threads": 1},
}


def write_config(workdir: Path, overrides: dict) -> Path:
    """A working directory with config/config.yaml = the default merged with ``overrides``."""
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    path = workdir / "config" / "config.yaml"
    path.write_text(yaml.safe_dump(merged(default_config(), overrides)), encoding="utf-8")
    return path


def env() -> dict:
    environment = dict(os.environ)
    environment["PATH"] = f"{BIN}{os.pathsep}{environment['PATH']}"
    environment.setdefault("MPLBACKEND", "Agg")
    return environment


def run_snakemake(
    workdir: Path, *args: str, timeout: float = 600, extra_env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run the real workflow in ``workdir`` (two cores), capturing its output."""
    command = [str(BIN / "snakemake"), "--snakefile", str(SNAKEFILE), "--cores", "2", *args]
    environment = {**env(), **(extra_env or {})}
    return subprocess.run(
        command, cwd=workdir, env=environment, capture_output=True, text=True, timeout=timeout
    )


def run_wcgan(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "wcgan"), *args], cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout
    )


def save_png(path: Path, size=(8, 8), mode="RGB", value=128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    rng = np.random.default_rng(value)
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels).save(path)
    return path


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """A class-per-folder tree: three labels with awkward names, four 8x8 RGB images each."""
    root = tmp_path / "images"
    for index, name in enumerate(["red car", "Café", "x+y"]):
        for i in range(4):
            save_png(root / name / f"{i}.png", value=index * 10 + i)
    return root


@pytest.fixture(scope="session")
def digit_shards(tmp_path_factory) -> list:
    """Shards of digits 0, 1 and 2, as the split step makes them."""
    from wcgan.data import Shard, load_label_images
    from wcgan.labels import make_labels
    from wcgan.sources import DataSpec

    spec = DataSpec()
    return [
        Shard(load_label_images(spec, label.name), label, "digits") for label in make_labels(["0", "1", "2"])
    ]
