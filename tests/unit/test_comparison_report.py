"""The comparison report with scores that are NaN or infinite: written all the same, the cells
named, and the finite cells' figures as they would be without them."""

import csv
import math

import pytest

from pyro_vae import Config
from pyro_vae.app.comparison_report import _mean_std, write_report

NAN, INF = float("nan"), float("inf")
BASE = Config(dataset="digits", epochs=2)


def row(setting, seed, log_px, scale="counts", **changes):
    """One cell's row as compare reads it from the cell's eval.json and metrics.csv."""
    values = {"likelihood": setting, "seed": seed, "dataset_used": "digits",
              "run_dir": f"runs/{setting}/seed{seed}", "epochs": 2,
              "final_test_elbo": log_px - 5, "train_seconds": 1.0 + seed, "log_px": log_px,
              "log_px_se": 0.5, "log_px_mc_se": 0.1, "elbo": log_px - 4,
              "reconstruction": -90.0, "kl": 10.0 + seed, "active_units": 5, "latent_dim": 10,
              "bits_per_dim": None, "scale": scale, "units": "nats",
              "k": 100, "test_elbo_curve": [log_px - 9, log_px - 5]}  # fmt: skip
    return {**values, **changes}


FINITE = [row("a", 0, -100.0), row("a", 1, -102.0), row("a", 2, -101.0),
          row("b", 0, -95.0), row("b", 1, -97.5)]  # fmt: skip


def table_line(markdown, setting):
    """The table's line of a setting, without its rank."""
    (line,) = [line for line in markdown.splitlines() if f"| `{setting}` |" in line]
    return line.split(" | ", 1)[1]


def report_of(folder, rows, seeds=(0, 1, 2)):
    folder.mkdir()
    return write_report(folder, ["likelihood"], rows, BASE, list(seeds), 100, 0)


@pytest.mark.parametrize("bad", [NAN, INF, -INF], ids=["nan", "inf", "-inf"])
def test_non_finite_cells_are_named_and_leave_the_finite_figures_alone(tmp_path, bad):
    clean = report_of(tmp_path / "clean", FINITE)
    a2 = {"final_test_elbo": bad, "kl": bad, "train_seconds": bad, "test_elbo_curve": [-110, bad]}
    dirty_rows = [
        *(row(r["likelihood"], r["seed"], r["log_px"], **a2) if r["seed"] == 2 else r
          for r in FINITE),
        row("c", 0, bad, final_test_elbo=bad, log_px_se=bad, test_elbo_curve=[bad, bad]),
        row("c", 1, -90.0, log_px_se=bad),  # the best finite number, but seed 0 is not finite
    ]  # fmt: skip
    dirty = report_of(tmp_path / "dirty", dirty_rows)
    text = str(bad)  # "nan", "inf", "-inf"

    assert (tmp_path / "dirty" / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "dirty" / "comparison.md").read_text() == dirty.markdown
    assert dirty.ranking == clean.ranking == ["b", "a"]  # c is not ranked
    by_label = {entry["label"]: entry for entry in dirty.summary}
    for entry in clean.summary:
        for stat in ("log_px", "active_units"):
            assert by_label[entry["label"]][stat] == entry[stat]
    assert by_label["a"]["kl"] == (10.5, pytest.approx(0.5**0.5))  # seeds 0 and 1
    assert by_label["c"]["log_px"] == (-90.0, None)  # one finite seed: no spread

    assert table_line(dirty.markdown, "b") == table_line(clean.markdown, "b")
    a_line, clean_a = table_line(dirty.markdown, "a"), table_line(clean.markdown, "a")
    assert a_line.split(" | ")[:3] == clean_a.split(" | ")[:3]  # likelihood, scale, log p(x)
    assert "| -101.00 ± 1.00 |" in a_line
    assert f"| -106.00 ± 1.41 (without seed 2: {text}) |" in a_line
    assert a_line.split(" | ")[5] == clean_a.split(" | ")[5]  # active units
    assert f"| – | `c` | counts | -90.00 (without seed 0: {text}) |" in dirty.markdown
    assert f"| -95.00 (without seed 0: {text}) |" in dirty.markdown  # c's test ELBO

    assert dirty.not_finite == [
        f"`a` seed 2: test ELBO {text}, KL {text}, train time {text}",
        f"`c` seed 0: log p(x) {text}, test ELBO {text}",
    ]
    for cell in dirty.not_finite:
        assert f"- {cell}" in dirty.markdown
    assert "is not finite on one seed or more is not ranked (–)" in dirty.markdown
    assert "diverged" in dirty.markdown and "float32" in dirty.markdown
    assert "not finite" not in clean.markdown and clean.not_finite == []

    with (tmp_path / "dirty" / "comparison.csv").open() as handle:
        written = list(csv.DictReader(handle))
    assert len(written) == len(dirty_rows) and written[5]["log_px"] == text


def test_a_report_of_nothing_but_non_finite_cells_is_written(tmp_path):
    rows = [row("poisson", 0, -INF), row("poisson", 1, -INF), row("nb", 0, NAN)]
    report = report_of(tmp_path / "cmp", rows)
    assert report.ranking == [] and len(report.not_finite) == 3
    assert "Not ranked: no setting has a finite log p(x) on every seed." in report.markdown
    assert "not finite (seed 0: -inf, seed 1: -inf)" in table_line(report.markdown, "poisson")
    assert "not finite (seed 0: nan)" in table_line(report.markdown, "nb")
    assert (tmp_path / "cmp" / "comparison.png").is_file()


def test_non_finite_cells_on_scales_that_are_not_ranked(tmp_path):
    rows = [row("bernoulli", 0, NAN, scale="binary"), row("gaussian", 0, 800.0, scale="continuous")]
    report = report_of(tmp_path / "cmp", rows, seeds=[0])
    assert report.ranking == [] and "Not ranked: the numbers live on different scales" in (
        report.markdown
    )
    assert report.not_finite == ["`bernoulli` seed 0: log p(x) nan, test ELBO nan"]
    assert "| `gaussian` | continuous | 800.00 |" in report.markdown  # one seed: no ± 0.00


def test_mean_and_std_skip_non_finite_values_and_survive_huge_finite_ones():
    assert _mean_std([1.0, NAN, 3.0, -INF, None, INF]) == (2.0, pytest.approx(2**0.5))
    assert _mean_std([NAN, -INF]) is None and _mean_std([None]) is None
    assert _mean_std([1e308, 1e308]) == (1e308, 0.0)  # fmean's sum overflows here
    assert _mean_std([5.0, NAN]) == (5.0, None)  # one value has no spread, not a spread of 0
    mean, std = _mean_std([1.7e308, -1.7e308])  # a std beyond float's range
    assert mean == 0.0 and std == math.inf


def test_the_automatic_batch_size_is_named_auto_not_zero(tmp_path):
    assert BASE.batch_size == 0  # the default: each run records the number it trained with
    markdown = report_of(tmp_path / "auto", FINITE).markdown
    assert " batch_size=auto " in markdown and "batch_size=0" not in markdown
    fixed = write_report(
        tmp_path, ["likelihood"], FINITE, BASE.replace(batch_size=64), [0, 1, 2], 100, 0
    )
    assert " batch_size=64 " in fixed.markdown


def test_m2_settings_report_their_classifiers_test_accuracy(tmp_path):
    """A comparison of m2 settings (--vary aux_loss=...) left out q(y|x)'s accuracy, the
    number semi-supervised learning is compared by; other models get no such column."""
    rows = [row("a", 0, -100.0, accuracy=0.70), row("a", 1, -101.0, accuracy=0.80),
            row("b", 0, -99.0, accuracy=0.50)]  # fmt: skip
    report = report_of(tmp_path / "m2", rows, seeds=(0, 1))
    header = next(line for line in report.markdown.splitlines() if line.startswith("| rank"))
    assert "test accuracy" in header.split(" | ")
    assert "0.750 ± 0.071" in table_line(report.markdown, "a")
    assert "| 0.500 |" in table_line(report.markdown, "b")  # one seed: no spread
    with open(tmp_path / "m2" / "comparison.csv") as handle:
        assert [r["accuracy"] for r in csv.DictReader(handle)] == ["0.7", "0.8", "0.5"]
    plain = report_of(tmp_path / "vae", [row("a", 0, -100.0, accuracy=None)], seeds=(0,))
    assert "accuracy" not in plain.markdown


def test_a_cells_done_line_names_the_conditional_score_and_the_accuracy():
    """A cvae cell's line said "log p(x)" for log p(x|y), and an m2 cell's gave no accuracy."""
    from pyro_vae.app.compare import score_line

    cvae = {"log_px": -110.5, "units": "nats", "k": 50, "conditional": True, "accuracy": None}
    m2 = {"log_px": -101.6, "units": "nats", "k": 50, "conditional": False, "accuracy": 0.774}
    assert score_line(cvae).startswith("log p(x|y) -110.50 nats") and "accuracy" not in score_line(
        cvae
    )
    assert score_line(m2).startswith("log p(x) -101.60") and "test accuracy 77.4%" in score_line(m2)


def test_a_cvae_comparison_names_its_score_log_p_x_given_y(tmp_path):
    """comparison.md headed a CVAE's log p(x|y) "log p(x)" and ranked "by log p(x)"."""
    given_y = [row("a", 0, -110.0, scale="binary, given y"),
               row("b", 0, -112.0, scale="binary, given y")]  # fmt: skip
    cvae = report_of(tmp_path / "cvae", given_y, seeds=(0,))
    plain = report_of(tmp_path / "vae", [row("a", 0, -100.0, scale="binary")], seeds=(0,))
    assert "| log p(x|y) (nats) |" in cvae.markdown
    assert "Ranked by the mean log p(x|y)" in cvae.markdown
    assert "log p(x|y)" not in plain.markdown and "| log p(x) (nats) |" in plain.markdown
