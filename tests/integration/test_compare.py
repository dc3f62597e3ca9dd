import csv
import json
import subprocess
import sys

import pytest

from pyro_vae import Config
from pyro_vae.app.cli import main
from pyro_vae.app.compare import (
    cell_commands,
    compare,
    parse_grid,
    parse_vary,
    plan_cells,
)
from pyro_vae.app.comparison_report import ranking_refusal, write_report
from pyro_vae.app.run_folder import RunFolder
from pyro_vae.errors import ConfigError

TINY = {"epochs": 1, "batch_size": 50, "hidden": [16], "latent_dim": 2, "eval_k": 5,
        "device": "cpu"}  # fmt: skip
TINY_FLAGS = ["--epochs", "1", "--batch-size", "50", "--hidden", "16", "--latent-dim", "2",
              "--eval-k", "5", "--device", "cpu", "--seeds", "0"]  # fmt: skip


def base_config(tiny_npz, **changes):
    return Config(**{"dataset": str(tiny_npz), **TINY, **changes})


def read_rows(out):
    with (out / "comparison.csv").open() as handle:
        return list(csv.DictReader(handle))


def metrics_without_times(cell_dir):
    rows = RunFolder(cell_dir).read_metrics()
    return [{k: v for k, v in row.items() if "seconds" not in k} for row in rows]


def stamps(cell_dir):
    return {name: (cell_dir / name).stat().st_mtime_ns for name in ("checkpoint.pt", "eval.json")}


# -- the grid, without training ----------------------------------------------------------------


def test_vary_converts_values_to_the_type_of_their_key():
    assert parse_vary("latent-dim=2,10,50") == ("latent_dim", [2, 10, 50])
    key, rates = parse_vary("lr=1e-3,0.01")
    assert key == "lr" and rates == [0.001, 0.01] and all(type(r) is float for r in rates)
    assert parse_vary("hidden=[400,200],64") == ("hidden", [[400, 200], [64]])
    assert parse_vary("prior=standard-normal, mog") == ("prior", ["standard-normal", "mog"])
    assert parse_vary("objective=elbo,[renyi:alpha=0.5,k=5]") == (
        "objective", ["elbo", "renyi:alpha=0.5,k=5"]
    )  # fmt: skip
    assert parse_vary("prior=mypkg.priors:HierPrior")[1] == ["mypkg.priors:HierPrior"]
    tables = parse_vary('prior_args={"s":[1,2]},{"s":[3]}')
    assert tables == ("prior_args", [{"s": [1, 2]}, {"s": [3]}])


@pytest.mark.parametrize(
    "text, message",
    [
        ("latnet_dim=2", "unknown config key 'latnet_dim'; valid keys: .*latent_dim"),
        (
            "latent_dim=two",
            r"--vary latent_dim: 'two' is not an integer or a bracketed list of "
            r"integers; write e.g. --vary 'latent_dim=150,\[100,50\]'",
        ),
        ("lr=fast", r"--vary lr: 'fast' is not a number"),
        ("hidden=[400,x]", r"--vary hidden: '\[400,x\]' is not a list of integers"),
        ("hidden=[400,200", r"--vary hidden: unbalanced brackets"),
        ("latent_dim=2,,3", r"--vary latent_dim: empty value"),
        ("latent_dim", r"expected KEY=V1,V2"),
        ("seed=1,2", r"--vary seed: .* give the seeds with --seeds"),
        ("prior_args=[1]", r"--vary prior_args: '\[1\]' is not a JSON object; write e.g."),
    ],
)
def test_a_bad_vary_is_refused_naming_the_key_and_the_fix(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_vary(text)


def test_the_grid_is_the_cartesian_product_of_the_varied_keys(tiny_npz, tmp_path):
    grid = parse_grid(["latent_dim=2,5", "hidden=[32,16],8"], {"prior": ["standard-normal", "mog"],
                                                             "objective": None})  # fmt: skip
    assert list(grid) == ["latent_dim", "hidden", "prior"]
    base = base_config(tiny_npz)
    cells = plan_cells(base, grid, [0, 1], tmp_path / "cmp")
    got = [(c.config.latent_dim, c.config.hidden, c.config.prior, c.config.seed) for c in cells]
    assert got == [
        (latent, hidden, prior, seed)
        for latent in (2, 5) for hidden in ([32, 16], [8])
        for prior in ("standard-normal", "mog") for seed in (0, 1)
    ]  # fmt: skip
    assert len({c.path for c in cells}) == 16 and [c.index for c in cells] == list(range(1, 17))
    fixed = {k: v for k, v in base.to_dict().items() if k not in {*grid, "seed", "out"}}
    assert all({k: c.config.to_dict()[k] for k in fixed} == fixed for c in cells)
    assert cells[2].values == {"latent_dim": "2", "hidden": "[32,16]", "prior": "mog"}
    assert cells[2].path == (tmp_path / "cmp/runs/latent_dim=2_hidden=_32_16_prior=mog/seed0")
    assert not (tmp_path / "cmp").exists()  # planning writes nothing


def test_a_key_varied_twice_or_nothing_varied_is_refused():
    with pytest.raises(ConfigError, match="objective is varied twice"):
        parse_grid(["objective=elbo"], {"objective": ["iwae:k=5"]})
    with pytest.raises(ConfigError, match="nothing to vary; give --vary KEY=V1,V2"):
        parse_grid([], {"objective": None})


@pytest.mark.parametrize(
    "grid, seeds, message",
    [
        ({"latent_dim": [2, 0]}, [0], r"latent_dim: must be >= 1, got 0"),
        ({"prior": ["mog-that-does-not-exist"]}, [0], r"prior: unknown name"),
        ({"objective": ["elbo", "elbo"]}, [0], "objective values must be non-empty and distinct"),
        ({"objective": ["elbo"]}, [], "seeds must be non-empty"),
        ({"seed": [1, 2]}, [0], "seed cannot be varied; give the seeds with --seeds"),
        ({"hidden": [[16], 16]}, [0], r"hidden: expected list\[int\], got int 16"),
        # a bare string was split into letters ("objective: unknown name 'e'")
        ({"objective": "elbo"}, [0], r"objective takes a list of values, .*\['elbo'\]\}"),
        ([("objective", ["elbo"])], [0], "the grid must be a dict of config keys"),
    ],
)
def test_bad_values_are_refused_by_config_before_anything_is_written(
    tiny_npz, tmp_path, grid, seeds, message
):
    with pytest.raises(ConfigError, match=message):
        compare(base_config(tiny_npz), grid, seeds, tmp_path / "cmp")
    assert not (tmp_path / "cmp").exists()


def test_a_training_runs_folder_is_refused_as_a_comparisons_folder(tiny_npz, tmp_path):
    run = tmp_path / "run"
    RunFolder(run).check_writable()
    RunFolder(run).write_config(base_config(tiny_npz))
    RunFolder(run).write_info({"pyro_vae_version": "0.1.0"})
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(ConfigError, match="is the folder of a training run"):
        compare(base_config(tiny_npz), {"latent_dim": [2, 3]}, [0], run)
    assert sorted(p.name for p in run.iterdir()) == before


def test_a_changed_setting_is_not_mixed_into_an_existing_comparison(tiny_npz, tmp_path):
    out = tmp_path / "cmp"
    (cell,) = plan_cells(base_config(tiny_npz), {"objective": ["elbo"]}, [0], out)
    RunFolder(cell.path).check_writable()
    RunFolder(cell.path).write_config(cell.config)  # as if an earlier comparison trained it
    changed = base_config(tiny_npz, latent_dim=3)
    with pytest.raises(ConfigError, match=r"other settings \(latent_dim: 2 there, 3 now\)"):
        compare(changed, {"objective": ["elbo"]}, [0], out)
    with pytest.raises(ConfigError, match=r"other settings \(latent_dim: 2 there, 3 now\)"):
        cell_commands(changed, {"objective": ["elbo"]}, [0], out)


def test_a_cell_trained_with_the_automatic_batch_size_belongs_to_its_comparison(tiny_npz, tmp_path):
    out = tmp_path / "cmp"
    auto = base_config(tiny_npz, batch_size=0)
    (cell,) = plan_cells(auto, {"objective": ["elbo"]}, [0], out)
    folder = RunFolder(cell.path)
    folder.check_writable()
    folder.write_config(cell.config.replace(batch_size=13))  # what training recorded
    folder.write_info({"num_train": 135, "world_size": 1, "finished": False})
    assert cell_commands(auto, {"objective": ["elbo"]}, [0], out)  # a tenth of 135: the same
    folder.write_info({"num_train": 300, "world_size": 1, "finished": False})
    with pytest.raises(ConfigError, match=r"other settings \(batch_size: 13 there, 30 now\)"):
        cell_commands(auto, {"objective": ["elbo"]}, [0], out)


# -- the report -----------------------------------------------------------------------------------


def fake_row(likelihood, scale, log_px, seed=0, used="mnist5k"):
    return {"likelihood": likelihood, "seed": seed, "dataset_used": used, "run_dir": "runs/x",
            "epochs": 2, "final_test_elbo": log_px - 5, "train_seconds": 1.0, "log_px": log_px,
            "log_px_se": 0.5, "log_px_mc_se": 0.1, "elbo": log_px - 4, "reconstruction": -90.0,
            "kl": 10.0, "active_units": 5, "latent_dim": 10, "bits_per_dim": None,
            "scale": scale, "units": "nats", "k": 100,
            "test_elbo_curve": [log_px - 9, log_px - 5]}  # fmt: skip


def test_the_report_names_the_dataset_really_used(tmp_path):
    rows = [fake_row("bernoulli", "binary", -100.0, 0), fake_row("bernoulli", "binary", -102.0, 1)]
    base = Config(dataset="mnist", epochs=2)
    report = write_report(tmp_path, ["likelihood"], rows, base, [0, 1], 100, 0)
    assert "dataset=mnist5k " in report.markdown and "dataset=mnist " not in report.markdown
    assert "Dataset `mnist` was requested but not available, so its runs used `mnist5k`" in (
        report.markdown
    )
    assert report.summary[0]["log_px"] == (-101.0, pytest.approx(2**0.5))
    assert read_rows(tmp_path)[0]["dataset_used"] == "mnist5k"
    rows = [fake_row("bernoulli", "binary", -1.0, used="mnist")]
    same = write_report(tmp_path, ["likelihood"], rows, base, [0], 100, 0).markdown
    assert "dataset=mnist " in same and "requested but not available" not in same


def test_likelihoods_on_different_scales_are_not_ranked(tmp_path):
    rows = [fake_row("bernoulli", "binary", -100.0), fake_row("gaussian", "continuous", 800.0)]
    report = write_report(tmp_path, ["likelihood"], rows, Config(dataset="mnist5k"), [0], 100, 0)
    assert report.ranking == []
    assert "Not ranked: the numbers live on different scales" in report.markdown
    assert "bernoulli: binary" in report.markdown and "gaussian: continuous" in report.markdown
    assert "| rank |" not in report.markdown
    assert (tmp_path / "comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_ranking_refusal_names_each_scale():
    same = [{"prior": "a", "scale": "binary"}, {"prior": "b", "scale": "binary"}]
    assert ranking_refusal(same, ["prior"]) == ""
    mixed = [{"likelihood": "a", "scale": "binary"}, {"likelihood": "c", "scale": "8-bit"}]
    reason = ranking_refusal(mixed, ["likelihood"])
    assert "a: binary" in reason and "c: 8-bit" in reason and "bits per dimension" in reason


# -- running cells (subprocesses) -----------------------------------------------------------------


@pytest.fixture(scope="module")
def two_cells_in_parallel(tiny_npz, tmp_path_factory):
    """elbo and iwae:k=2, seed 0, run with --jobs 2; (out, result, messages)."""
    out = tmp_path_factory.mktemp("jobs2") / "cmp"
    messages = []
    grid = {"objective": ["elbo", "iwae:k=2"]}
    result = compare(base_config(tiny_npz), grid, [0], out, jobs=2, log=messages.append)
    return out, result, messages


@pytest.mark.slow
def test_jobs_2_runs_cells_at_once_with_the_numbers_of_jobs_1(
    two_cells_in_parallel, tiny_npz, tmp_path
):
    out2, result2, messages2 = two_cells_in_parallel
    starts_and_ends = [m.split(": ", 1)[1].split(" ")[0] for m in messages2
                       if m.startswith("[") and ": epoch" not in m]  # fmt: skip
    assert starts_and_ends == ["training", "training", "done", "done"]  # both ran at once
    assert any("[2/2] objective=iwae:k=2 seed=0: epoch   1/1  train ELBO" in m for m in messages2)
    out1 = tmp_path / "cmp"  # the second cell alone, with --jobs 1
    compare(base_config(tiny_npz), {"objective": ["iwae:k=2"]}, [0], out1, jobs=1, log=print)
    (row1,) = read_rows(out1)
    rows2 = read_rows(out2)
    assert [r["objective"] for r in rows2] == ["elbo", "iwae:k=2"]
    assert metrics_without_times(out1 / row1["run_dir"]) == metrics_without_times(
        out2 / rows2[1]["run_dir"]
    )
    assert row1["log_px"] == rows2[1]["log_px"] and float(row1["log_px"]) < 0
    assert "| rank | objective |" in result2.markdown and f"dataset={tiny_npz} " in result2.markdown
    assert (out2 / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    request = Config.from_file(out2 / rows2[1]["run_dir"] / "config-request.toml")
    assert request.objective == "iwae:k=2" and request.seed == 0


@pytest.mark.slow
def test_rerunning_resumes_interrupted_cells_and_skips_finished_ones(
    two_cells_in_parallel, tiny_npz
):
    out, _, _ = two_cells_in_parallel
    elbo, iwae = (out / "runs" / name / "seed0" for name in ("elbo", "iwae_k=2"))
    before = stamps(iwae)
    info = RunFolder(elbo).read_info()
    RunFolder(elbo).write_info({**info, "finished": False})  # as if killed before the end
    messages = []
    grid = {"objective": ["elbo", "iwae:k=2"]}
    compare(base_config(tiny_npz), grid, [0], out, log=messages.append)
    assert "[1/2] objective=elbo seed=0: resuming the interrupted run" in messages
    assert "[2/2] objective=iwae:k=2 seed=0: finished earlier, not run again" in messages
    assert stamps(iwae) == before
    assert RunFolder(elbo).read_info()["finished"] is True
    assert len(read_rows(out)) == 2


@pytest.mark.slow
def test_a_failing_cell_is_named_the_others_finish_and_the_exit_status_is_2(
    tiny_npz, tmp_path, capsys
):
    missing = tmp_path / "missing.npz"
    out = tmp_path / "cmp"
    argv = ["compare", "--vary", f"dataset={tiny_npz},{missing}", *TINY_FLAGS, "--jobs", "2",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    printed = capsys.readouterr()
    (error,) = printed.err.strip().splitlines()
    assert error.startswith("pyro-vae: error: compare: 1 of 2 cells failed (dataset=")
    assert f"{missing}: file not found" in error and "rerun the same command" in error
    assert "seed=0: FAILED after" in printed.out and "compare.log" in printed.out
    rows = read_rows(out)
    assert [row["dataset"] for row in rows] == [str(tiny_npz)] and float(rows[0]["log_px"]) < 0
    markdown = (out / "comparison.md").read_text()
    assert f"- dataset={missing} seed=0: {missing}: file not found" in markdown


@pytest.mark.slow
def test_printed_commands_run_as_a_scheduler_would_then_compare_collects(
    tiny_npz, tmp_path, capsys
):
    out = tmp_path / "cmp"
    argv = ["compare", "--objectives", "elbo", *TINY_FLAGS, "--dataset", str(tiny_npz),
            "--out", str(out)]  # fmt: skip
    assert main([*argv, "--print-commands"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    cell = out / "runs" / "elbo" / "seed0"
    assert (cell / "config-request.toml").is_file() and not (cell / "checkpoint.pt").exists()
    assert " train --config " in line and " && " in line and " evaluate " in line
    done = subprocess.run(line, shell=True, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    trained = stamps(cell)

    messages = []
    result = compare(base_config(tiny_npz), {"objective": ["elbo"]}, [0], out, log=messages.append)
    assert "[1/1] objective=elbo seed=0: finished earlier, not run again" in messages
    assert stamps(cell) == trained and f"dataset={tiny_npz} " in result.markdown

    compare(base_config(tiny_npz), {"objective": ["elbo"]}, [0], out, k=7, log=messages.append)
    assert "[1/1] objective=elbo seed=0: evaluating" in messages
    assert json.loads((cell / "eval.json").read_text())["k"] == 7
    assert (cell / "checkpoint.pt").stat().st_mtime_ns == trained["checkpoint.pt"]
    assert main([*argv, "--eval-k", "7", "--print-commands"]) == 0
    assert capsys.readouterr().out.startswith("# every cell is done")


def test_conditional_and_unconditional_scores_are_not_ranked_together():
    from pyro_vae.app.comparison_report import CONDITIONAL, ranking_refusal

    rows = [{"model": "vae", "scale": "binary"}, {"model": "cvae", "scale": "binary" + CONDITIONAL}]
    refusal = ranking_refusal(rows, ["model"])
    assert "Not ranked" in refusal and "log p(x|y), not log p(x)" in refusal
    assert ranking_refusal(rows[:1] * 2, ["model"]) == ""


@pytest.mark.slow
def test_what_evaluate_warned_about_reaches_the_terminal(tmp_path):
    """A cell below the real-valued baseline warned only in its own compare.log."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 6)) + 0.3 * rng.normal(size=(200, 6))
    np.savez(tmp_path / "table.npz", x=((x - x.mean(0)) / x.std(0)).astype(np.float32))
    base = Config(dataset=str(tmp_path / "table.npz"), likelihood="gaussian", epochs=2,
                  batch_size=40, hidden=[16], latent_dim=2, eval_k=5, device="cpu")  # fmt: skip
    said: list[str] = []
    grid = {"likelihood_scale_value": [0.0, 0.1]}
    compare(base, grid, [0], tmp_path / "cmp", jobs=2, log=said.append, progress=False)
    warned = [line for line in said if "warning: log p(x)" in line]
    assert len(warned) == 1 and warned[0].startswith("likelihood_scale_value=0.1 seed=0: ")


def test_a_cell_stopped_by_ctrl_c_is_interrupted_not_failed(tmp_path):
    """Found by a probe: Ctrl-C during the evaluations reported the cells as FAILED."""
    from pyro_vae.app.compare import INTERRUPTED, Cell, _Runner

    said: list[str] = []
    runner = _Runner(said.append, total=1, progress=False)
    cell = Cell(1, {"latent_dim": "2"}, 0, Config(out=str(tmp_path / "cell")))
    (tmp_path / "cell").mkdir()
    stopped = [sys.executable, "-c", "import sys; sys.exit(130)"]  # pyro-vae after a Ctrl-C
    assert runner.run_cell(cell, "training", [stopped]) == INTERRUPTED
    assert said[-1] == "[1/1] latent_dim=2 seed=0: interrupted; the same command continues it"
    assert not any("FAILED" in line for line in said)
