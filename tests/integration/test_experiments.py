"""Every experiments/ script runs end to end with a tiny budget, so none of them rots."""

import csv
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments"


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / f"{name}.py"), *args],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_bench_distributed_smoke(tmp_path):
    out = tmp_path / "bench.csv"
    run_script(
        "bench_distributed",
        "--steps",
        "3",
        "--warmup",
        "1",
        "--batch-size",
        "64",
        "--out",
        str(out),
    )
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["processes"], r["threads_each"]) for r in rows] == [
        ("1", "1"),
        ("1", "2"),
        ("2", "1"),
    ]
    assert all(float(r["images_per_s"]) > 0 for r in rows)


SMOKE_BENCH = ["--steps", "2", "--warmup", "1", "--train-images", "1100", "--log-px-images", "4",
               "--memory-k", "20", "--memory-images", "40", "--epoch-rounds", "1"]  # fmt: skip
MEASURES = ["training step"] * 4 + ["training epoch", "hand-written PyTorch epoch",
            "log p(x) estimate", "evaluation peak memory", "evaluation peak memory"]  # fmt: skip


def test_pyro_vae_bench_measures_each_thread_count_with_progress(tmp_path):
    """One run of ``pyro-vae bench`` at both thread counts (each run costs ~10 s a count)."""
    out = tmp_path / "bench.csv"
    done = subprocess.run(
        [sys.executable, "-m", "pyro_vae", "bench", *SMOKE_BENCH, "--threads", "1", "2",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "hand-written PyTorch step" in done.stdout
    assert done.stdout.splitlines()[0].split()[0] == "threads"
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["threads"], r["measure"].split(",")[0]) for r in rows] == [
        (threads, measure) for threads in "12" for measure in MEASURES
    ]
    assert all(float(r["ratio"]) > 0 for r in rows) and "ratio" in done.stdout
    progress = [line for line in done.stderr.splitlines() if line.startswith("bench: threads")]
    phases = [line.split(":")[1].strip() for line in progress]
    assert phases == ["threads 1"] * 5 + ["threads 2"] * 5
    assert all(line.endswith(" s") for line in progress)  # each phase says how long it took


def test_bench_training_script_is_the_same_benchmark(tmp_path, monkeypatch):
    """The script runs ``pyro-vae bench``'s code on the same settings, so the run above
    covers it; the script itself is checked to parse and hand over, in process."""
    from pyro_vae.app import bench
    from pyro_vae.app.cli import build_parser

    argv = [*SMOKE_BENCH, "--threads", "1", "2", "--out", str(tmp_path / "bench.csv")]
    handed = []
    monkeypatch.setattr(bench, "run_from_args", handed.append)
    monkeypatch.setattr(sys, "argv", ["bench_training.py", *argv])
    runpy.run_path(str(EXPERIMENTS / "bench_training.py"), run_name="__main__")
    cli = vars(build_parser().parse_args(["bench", *argv]))
    assert len(handed) == 1 and vars(handed[0]) == {k: cli[k] for k in vars(handed[0])}
    assert set(cli) - set(vars(handed[0])) <= {"command", "debug"}


def test_profile_step_tables_both_steps_op_by_op():
    done = run_script("profile_step", "--batch", "16", "--steps", "2", "--warmup", "1")
    table = done.stdout.splitlines()
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in table if "|" in line}
    assert "`aten::_fused_adam_`" in rows and "all operators" in rows
    counts = [float(cell) for cell in rows["all operators"][::2][:2]]  # pyro-vae, hand
    assert all(count > 50 for count in counts)  # both steps were profiled, op by op
    assert table[0].startswith("batch 16: step wall")


@pytest.mark.parametrize("what", ["python", "steps", "guard", "log-px", "log-px-threads"])
def test_fixed_overhead_measures_each_part(what):
    import re

    done = run_script("fixed_overhead", what, "--steps", "20")
    if what == "steps":  # both batch sizes, with and without the guard
        ratios = [float(r) for r in re.findall(r": (\d+\.\d+)", done.stdout)]
        assert len(ratios) == 4 and all(0.5 < r < 3 for r in ratios)
        return
    if what == "log-px-threads":  # the chunk at both thread counts, then one row per operator
        one, two = (float(n) for n in re.findall(r"(\d+) us", done.stdout.splitlines()[0]))
        rows = [line for line in done.stdout.splitlines() if line.startswith("| `aten::")]
        assert one > 0 and two > 0 and any("addmm" in row for row in rows)
        return
    numbers = [float(n) for n in re.findall(r"(-?\d+(?:\.\d+)?) us", done.stdout)]
    if what == "log-px":  # the chunk, its decoder + likelihood, the rest, the reference
        chunk, core, rest, reference = numbers
        assert chunk == pytest.approx(core + rest, abs=1) and reference > 0
    else:
        assert len(numbers) == 3 and all(n > 0 for n in numbers[:2])


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
    registry = {"objective": "OBJECTIVES", "prior": "PRIORS", "likelihood": "LIKELIHOODS"}[axis]
    expected = module[registry] if axis == "objective" else sorted(module[registry])
    assert len(expected) >= 5  # the script's own grid: every built-in (or the chosen five)
    out = tmp_path / "out"
    two = expected[:2]  # two cells, two at once: each cell is its own train and evaluate
    tiny = ["--dataset", str(tiny_npz), "--epochs", "1", "--eval-k", "4", "--seeds", "0",
            "--hidden", "16", "--latent-dim", "2", "--batch-size", "50", "--out", str(out),
            "--no-progress", "--jobs", "2", f"--{axis}s", *two]  # fmt: skip
    assert module["main"](tiny) == 0
    with (out / "comparison.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row[axis] for row in rows] == two
    assert all(row["epochs"] == "1" and row["k"] == "4" for row in rows)
    assert (out / "comparison.md").is_file() and (out / "comparison.png").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: run the check itself")
def test_gpu_check_imports_and_refuses_clearly_without_a_gpu():
    done = subprocess.run(
        [sys.executable, str(EXPERIMENTS / "gpu_check.py")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "no CUDA device here: this check needs a GPU"


def test_custom_model_resumes_both_user_models_bit_exactly():
    done = run_script("custom_model", "--epochs", "2")
    lines = [line for line in done.stdout.splitlines() if "killed and resumed" in line]
    assert len(lines) == 2 and all("bit-exact" in line for line in lines), done.stdout


def test_stacked_layers_smoke_compares_one_and_two_layers(tiny_npz, tmp_path):
    module = runpy.run_path(str(EXPERIMENTS / "stacked_layers.py"), run_name="smoke")
    out = tmp_path / "out"
    tiny = ["--dataset", str(tiny_npz), "--epochs", "1", "--eval-k", "4", "--seeds", "0",
            "--hidden", "16", "--latent-hidden", "8", "--batch-size", "50", "--out", str(out),
            "--no-progress", "--jobs", "2"]  # fmt: skip
    assert module["main"](tiny) == 0
    with (out / "comparison.csv").open() as handle:  # not the evaluation's total latent_dim
        assert {row["latent_dim"] for row in csv.DictReader(handle)} == {"150", "[100,50]"}
    table = (out / "layers.md").read_text()
    assert "| 150 |" in table and "| 100 50 |" in table, table
    assert "/ 100, " in table and "/ 50 |" in table


def test_real_valued_table_smoke_scores_both_starts_against_the_baseline():
    done = run_script("real_valued_table", "--epochs", "2", "--seeds", "0", "--k", "10")
    rows = [
        line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line
    ]
    assert [row.split(" | ")[0] for row in rows[1:]] == [
        "| data's spread (default)",
        "| 0.1 (before)",
    ]
    baselines = {row.split(" | ")[3] for row in rows[1:]}
    assert len(baselines) == 1  # the same data, the same baseline
