"""Every experiments/ script runs end to end with one epoch and a tiny K, so none rots."""

import csv
import runpy
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.parametrize(
    "script, axis",
    [
        ("compare_objectives.py", "objective"),
        ("compare_priors.py", "prior"),
        ("compare_likelihoods.py", "likelihood"),
    ],
)
def test_experiment_script_smoke(script, axis, tiny_npz, tmp_path):
    module = runpy.run_path(str(EXPERIMENTS / script), run_name="smoke")
    out = tmp_path / "out"
    tiny = ["--dataset", str(tiny_npz), "--epochs", "1", "--eval-k", "4", "--seeds", "0",
            "--hidden", "16", "--latent-dim", "2", "--batch-size", "50", "--out", str(out),
            "--no-progress"]  # fmt: skip
    assert module["main"](tiny) == 0
    with (out / "comparison.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    registry = {"objective": "OBJECTIVES", "prior": "PRIORS", "likelihood": "LIKELIHOODS"}[axis]
    expected = module[registry] if axis == "objective" else sorted(module[registry])
    assert [row[axis] for row in rows] == expected
    assert all(row["epochs"] == "1" and row["k"] == "4" for row in rows)
    assert (out / "comparison.md").is_file() and (out / "comparison.png").is_file()
