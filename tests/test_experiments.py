"""Every experiments/ script runs with a tiny budget, so none of them rots."""

import importlib.util
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_distributed_smoke(tmp_path):
    out = tmp_path / "bench.csv"
    rows = load("bench_distributed").main(
        ["--steps", "3", "--warmup", "1", "--batch-size", "64", "--out", str(out)]
    )
    assert [(r["processes"], r["threads_each"]) for r in rows] == [(1, 1), (1, 2), (2, 1)]
    assert all(r["images_per_s"] > 0 for r in rows) and out.read_text().startswith("processes,")
