"""The report of a comparison: comparison.csv, comparison.md and comparison.png.

Rows hold one cell each: the varied keys' values, the seed, the dataset really used
and the evaluation. Each setting (values of the varied keys) is summarized as mean +/-
std over seeds and ranked by the log p(x) estimate, unless their likelihoods put the
numbers on different scales (binary nats of a
probability mass, nats of a density, bits per dimension of an 8-bit mass): a mass and
a density are not comparable, and neither are likelihoods fitted to differently
prepared data, so such a comparison is reported without a ranking, saying why.

A score that is NaN or infinite (a diverged model, data its likelihood cannot score) is
left out of the means, the ranking and the plot, and the report names its cell: a
setting with such a log p(x) on any seed is listed after the ranked ones, unranked.

Example:
    >>> rows = [{"likelihood": "bernoulli", "scale": "binary"},
    ...         {"likelihood": "gaussian", "scale": "continuous"}]
    >>> print(ranking_refusal(rows, ["likelihood"]))  # doctest: +ELLIPSIS
    Not ranked: the numbers live on different scales (bernoulli: binary, nats of a ...
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .atomic import atomic_write_text  # noqa: E402
from .config import Config  # noqa: E402
from .faults import NON_FINITE_CAUSES  # noqa: E402

__all__ = [
    "Report",
    "label_of",
    "score_name",
    "summarize",
    "rank",
    "not_finite_cells",
    "ranking_refusal",
    "write_report",
    "describe_scale",
    "SCALE_MEANINGS",
    "CONDITIONAL",
]

SCALE_MEANINGS = {
    "binary": "nats of a probability mass on binarized pixels",
    "continuous": "nats of a density on real-valued pixels, not a probability",
    "8-bit": "a probability mass over 256 levels per pixel (bits per dimension)",
    "counts": "nats of a probability mass on counts (non-negative integers)",
}
CONDITIONAL = ", given y"  # a scale's suffix when a run scored log p(x|y) (a CVAE), not log p(x)


def score_name(scales: Sequence[str]) -> str:
    """What the runs' log-likelihood estimates are: ``log p(x|y)`` when every run scored
    its data given the labels (a CVAE), else ``log p(x)``.

    Example:
        >>> score_name(["binary, given y"]), score_name(["binary", "binary, given y"])
        ('log p(x|y)', 'log p(x)')
    """
    conditional = scales and all(scale.endswith(CONDITIONAL) for scale in scales)
    return "log p(x|y)" if conditional else "log p(x)"


def describe_scale(scale: str) -> str:
    """What the numbers of a scale are, saying so when they are conditional on the label."""
    base = scale.removesuffix(CONDITIONAL)
    meaning = SCALE_MEANINGS.get(base, "an unknown scale")
    if scale.endswith(CONDITIONAL):
        meaning += "; conditional on the label: log p(x|y), not log p(x)"
    return meaning


_STATS = {  # the summarized stats and their names in the report
    "log_px": "log p(x)",
    "final_test_elbo": "test ELBO",
    "kl": "KL",
    "active_units": "active units",
    "bits_per_dim": "bits/dim",
    "accuracy": "test accuracy",
    "train_seconds": "train time",
}


@dataclass
class Report:
    """``not_finite`` names each cell with a NaN or infinite score, and those scores."""

    summary: list[dict[str, Any]]
    ranking: list[str]
    ranking_note: str
    markdown: str
    not_finite: list[str] = field(default_factory=list)


def _is_bad(value: Any) -> bool:
    """Whether ``value`` is NaN or infinite (None, an absent score, is not)."""
    return value is not None and not math.isfinite(float(value))


def _mean_std(values: Sequence[float | None]) -> tuple[float, float | None] | None:
    """Mean and standard deviation of the finite values (None if there are none; a std of
    None for one value, which has no spread to show: not 0, which would claim seeds agree)."""
    present = [float(v) for v in values if v is not None and not _is_bad(v)]
    if not present:
        return None
    try:
        std = statistics.stdev(present) if len(present) > 1 else None
    except OverflowError:  # finite values near float's limit
        std = math.inf
    return statistics.mean(present), std  # mean: exact, so it cannot overflow


def label_of(row: Mapping[str, Any], keys: Sequence[str]) -> str:
    """A setting's name: the value of a single key, else ``key=value`` pairs.

    Example:
        >>> label_of({"prior": "mog", "latent_dim": "2", "seed": 0}, ["prior"])
        'mog'
        >>> label_of({"prior": "mog", "latent_dim": "2", "seed": 0}, ["prior", "latent_dim"])
        'prior=mog latent_dim=2'
    """
    if len(keys) == 1:
        return str(row[keys[0]])
    return " ".join(f"{key}={row[key]}" for key in keys)


def summarize(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """One entry per setting (in order of appearance): label, the keys' values, seeds, scale,
    units, (mean, std) per stat over its finite values, and ``not_finite``: per stat with a
    NaN or infinite value, the (seed, value as text) pairs left out."""
    summary: dict[str, dict[str, Any]] = {}
    for row in rows:
        label = label_of(row, keys)
        values = {key: row[key] for key in keys}
        entry = summary.setdefault(
            label, {"label": label, **values, "scale": row["scale"], "units": row["units"]}
        )
        entry.setdefault("cells", []).append(row)
    for entry in summary.values():
        cells = entry.pop("cells")
        entry["seeds"] = len(cells)
        entry["not_finite"] = {}
        for stat in _STATS:
            entry[stat] = _mean_std([cell.get(stat) for cell in cells])
            bad = [(cell["seed"], str(float(cell[stat]))) for cell in cells
                   if _is_bad(cell.get(stat))]  # fmt: skip
            if bad:
                entry["not_finite"][stat] = bad
    return list(summary.values())


def rank(summary: Sequence[dict[str, Any]]) -> list[str]:
    """The labels of the settings whose every seed has a finite log p(x), best mean first."""
    ranked = [e for e in summary if e["log_px"] is not None and "log_px" not in e["not_finite"]]
    return [e["label"] for e in sorted(ranked, key=lambda e: -e["log_px"][0])]


def not_finite_cells(summary: Sequence[dict[str, Any]]) -> list[str]:
    """One line per cell with a NaN or infinite stat: its setting, seed and those stats."""
    cells: dict[tuple[str, Any], list[str]] = {}
    for entry in summary:
        for stat, bad in entry["not_finite"].items():
            for seed, value in bad:
                cells.setdefault((entry["label"], seed), []).append(f"{_STATS[stat]} {value}")
    return [f"`{label}` seed {seed}: {', '.join(stats)}" for (label, seed), stats in cells.items()]


def ranking_refusal(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> str:
    """Why these settings cannot be ranked against each other ("" when they can)."""
    scales = {label_of(row, keys): row["scale"] for row in rows}
    if len(set(scales.values())) <= 1:
        return ""
    described = "; ".join(
        f"{value}: {scale}, {describe_scale(scale)}" for value, scale in scales.items()
    )
    return (
        f"Not ranked: the numbers live on different scales ({described}). A probability mass "
        "and a density are not comparable (a density can exceed 1, its log can be positive), "
        "and each likelihood is fitted to differently prepared data (binarized, rescaled, "
        "8-bit or counts), so a higher log p(x) here does not mean a better model. Compare "
        "within one scale."
    )


def _fmt(entry: dict[str, Any], stat: str, digits: int = 2) -> str:
    """Mean ± std over the finite values (the value alone when there is one), then the seeds
    left out (e.g. ``seed 1: -inf``)."""
    values, bad = entry[stat], entry["not_finite"].get(stat)
    shown = "n/a" if values is None else f"{values[0]:.{digits}f}"
    if values is not None and values[1] is not None:
        shown += f" ± {values[1]:.{digits}f}"
    if not bad:
        return shown
    seeds = ", ".join(f"seed {seed}: {value}" for seed, value in bad)
    return f"not finite ({seeds})" if values is None else f"{shown} (without {seeds})"


def _datasets(rows: Sequence[dict[str, Any]], keys: Sequence[str], base: Config) -> tuple[str, str]:
    """The dataset every run used ("" if they differ) and a sentence on any substitution."""
    used = {row["dataset_used"] for row in rows}
    swaps = sorted({(row.get("dataset", base.dataset) if "dataset" in keys else base.dataset,
                     row["dataset_used"]) for row in rows})  # fmt: skip
    swaps = [(asked, got) for asked, got in swaps if asked != got]
    sentence = " ".join(
        f"Dataset `{asked}` was requested but not available, so its runs used `{got}` (see "
        "each run.json's dataset_note)."
        for asked, got in swaps
    )
    return (used.pop() if len(used) == 1 else ""), sentence


def _fixed_settings(base: Config, keys: Sequence[str], dataset: str) -> str:
    skip = {*keys, "seed", "out", "eval_k"}
    values = {f.name: getattr(base, f.name) for f in fields(base) if f.name not in skip}
    if "dataset" in values:
        values["dataset"] = dataset
    if values.get("batch_size") == 0:  # each run's config.toml holds the number it trained with
        values["batch_size"] = "auto"
    return " ".join(f"{name}={value}" for name, value in values.items())


def _markdown(
    keys: Sequence[str], summary, ranking: list[str], note: str, base: Config, seeds, k: int,
    eval_seed: int, command: str, rows: Sequence[dict[str, Any]], failures: Sequence[str],
) -> str:  # fmt: skip
    units = summary[0]["units"] if len({e["units"] for e in summary}) == 1 else "per likelihood"
    with_bits = any(row.get("bits_per_dim") is not None for row in rows)
    with_accuracy = any(row.get("accuracy") is not None for row in rows)  # m2 runs
    score = score_name([e["scale"] for e in summary])
    header = ["rank"] * (not note) + [*keys, "scale", f"{score} ({units})", "test ELBO",
                                      "KL", "active units"]  # fmt: skip
    header += ["bits/dim"] * with_bits + ["test accuracy"] * with_accuracy + ["train time (s)"]
    dataset, swapped = _datasets(rows, keys, base)
    lines = [
        f"# Comparison of {' x '.join(keys)}",
        "",
        f"{len(summary)} settings of {' x '.join(keys)} x {len(seeds)} seeds "
        f"({', '.join(map(str, seeds))}); everything else fixed: "
        f"`{_fixed_settings(base, keys, dataset)}`.",
        "",
        f"Each run is evaluated on its dataset's test split with K={k} importance samples "
        f"per datapoint (evaluation seed {eval_seed}). Numbers are per datapoint, mean ± std "
        "over seeds (a value without ± had one finite seed); test ELBO is the last epoch's "
        "single-sample estimate.",
        "",
    ]
    if swapped:
        lines += [swapped, ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    if note:
        order = [entry["label"] for entry in sorted(summary, key=lambda e: e["scale"])]
    else:  # the ranked settings, then those with a log p(x) that is not finite
        order = ranking + [e["label"] for e in summary if e["label"] not in ranking]
    by_label = {entry["label"]: entry for entry in summary}
    for position, label in enumerate(order, 1):
        e = by_label[label]
        place = str(position) if label in ranking else "–"
        cells = [place] * (not note) + [f"`{e[key]}`" for key in keys]
        cells += [e["scale"], _fmt(e, "log_px"), _fmt(e, "final_test_elbo"), _fmt(e, "kl"),
                  _fmt(e, "active_units", 1)]  # fmt: skip
        cells += [_fmt(e, "bits_per_dim", 4)] * with_bits + [_fmt(e, "accuracy", 3)] * with_accuracy
        cells += [_fmt(e, "train_seconds", 0)]
        lines.append("| " + " | ".join(cells) + " |")
    ranked = f"Ranked by the mean {score} estimate (higher is better)."
    if not ranking:
        ranked = "Not ranked: no setting has a finite log p(x) on every seed."
    elif len(ranking) < len(summary):
        ranked += " A setting whose log p(x) is not finite on one seed or more is not ranked (–)."
    lines += ["", note or ranked]
    bad_cells = not_finite_cells(summary)
    if bad_cells:
        lines += ["", "Not finite, so left out of the means ± std, the ranking and the plot "
                  "(each cell's eval.json `warning` and compare.log say more):"]  # fmt: skip
        lines += [f"- {cell}" for cell in bad_cells]
        lines += ["", f"Likely causes: {NON_FINITE_CAUSES}."]
    if failures:
        lines += ["", "Failed, so not in the table (rerun the command after fixing the cause):"]
        lines += [f"- {failure}" for failure in failures]
    return "\n".join(lines) + "\n"


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    columns = [key for key in rows[0] if key != "test_elbo_curve"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _finite_or_nan(value: Any) -> float:
    return math.nan if value is None or _is_bad(value) else float(value)


def _plot(path: Path, keys: Sequence[str], rows, summary, note: str) -> None:
    """Test-ELBO curves, and each cell's log p(x) with its setting's mean ± std; a value that
    is not finite leaves a gap in its curve, and a cell's is written at the axis' foot."""
    fig, (curves, finals) = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    right = len(summary) - 0.5  # the right end of the x axis: text does not widen it
    for i, entry in enumerate(summary):
        colour = colours[i % len(colours)]
        cells = [row for row in rows if label_of(row, keys) == entry["label"]]
        for j, cell in enumerate(cells):
            curve = [_finite_or_nan(value) for value in cell["test_elbo_curve"]]
            label = entry["label"] if j == 0 else None
            curves.plot(range(1, len(curve) + 1), curve, color=colour, alpha=0.7, label=label)
            x, log_px = i + 0.1 * (j + 1), _finite_or_nan(cell["log_px"])
            right = max(right, x + 0.3)
            if math.isnan(log_px):
                finals.text(x, 0.02, str(float(cell["log_px"])), color=colour, fontsize=7,
                            ha="center", transform=finals.get_xaxis_transform())  # fmt: skip
                continue
            se = _finite_or_nan(cell.get("log_px_se"))
            finals.errorbar(x, log_px, yerr=None if math.isnan(se) else se, fmt="o",
                            color=colour, alpha=0.6, markersize=4)  # fmt: skip
        if entry["log_px"] is not None:
            mean, std = entry["log_px"]
            spread = std if std is not None and math.isfinite(std) else None
            finals.errorbar(i, mean, yerr=spread, fmt="_", color="black", markersize=18,
                            capsize=6)  # fmt: skip
    curves.set(xlabel="epoch", ylabel=f"test ELBO per datapoint ({summary[0]['units']})",
               title="test ELBO over training (one line per seed)")  # fmt: skip
    curves.grid(alpha=0.3)
    curves.legend(fontsize=8)
    finals.set_xticks(range(len(summary)), [entry["label"] for entry in summary], rotation=20)
    finals.set_xlim(-0.5, right)
    title = "final log p(x): seeds (± s.e.) and mean ± std"
    finals.set(ylabel="log p(x) per datapoint", title=title + (" — NOT comparable" if note else ""))
    finals.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(
    out: Path, keys: Sequence[str], rows: Sequence[dict[str, Any]], base: Config,
    seeds: Sequence[int], k: int, eval_seed: int, command: str = "",
    failures: Sequence[str] = (),
) -> Report:  # fmt: skip
    """Write comparison.csv, comparison.md and comparison.png into ``out``.

    ``keys`` are the varied config keys; ``failures`` name the cells that failed. Scores
    that are NaN or infinite are left out of the statistics and named in the report.
    """
    summary = summarize(rows, keys)
    note = ranking_refusal(rows, keys)
    ranking = [] if note else rank(summary)
    markdown = _markdown(keys, summary, ranking, note, base, seeds, k, eval_seed, command, rows,
                         failures)  # fmt: skip
    atomic_write_text(out / "comparison.csv", _csv(rows))
    atomic_write_text(out / "comparison.md", markdown)
    _plot(out / "comparison.png", keys, rows, summary, note)
    return Report(summary, ranking, note, markdown, not_finite_cells(summary))
