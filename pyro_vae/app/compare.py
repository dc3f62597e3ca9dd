"""Comparisons: one config axis (objective, prior or likelihood) x seeds, everything else fixed.

Each cell is trained by :func:`pyro_vae.train.train` into its own run folder
(``OUT/runs/<value>/seed<N>``) and evaluated the same way: the run's test split, the
same K importance samples, the same evaluation seed. The comparison folder gets
``comparison.csv`` (one row per cell), ``comparison.md`` (mean +/- std over seeds per
value) and ``comparison.png`` (see :mod:`pyro_vae.comparison_report`).

Comparisons resume: a cell whose run finished and whose ``eval.json`` matches the
evaluation settings is read back, not run again; an interrupted run continues from
its checkpoint. A cell folder holding a run with another configuration is an error
rather than a silent mix of settings.

Example::

    result = compare(Config(dataset="mnist5k", epochs=30), "objective",
                     ["elbo", "iwae:k=5"], seeds=[0, 1, 2], out="comparisons/iwae")
    print(result.markdown)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .comparison_report import Report, write_report
from .config import Config
from .evaluate import evaluate
from .run_folder import RunFolder
from .runtime import resolve_device

__all__ = ["AXES", "EVAL_SEED", "compare", "ComparisonResult", "cell_folder"]

AXES = ("objective", "prior", "likelihood")
EVAL_SEED = 0


@dataclass
class ComparisonResult:
    out: Path
    rows: list[dict[str, Any]]
    report: Report

    @property
    def markdown(self) -> str:
        return self.report.markdown


def cell_folder(out: str | Path, value: str, seed: int) -> Path:
    """``OUT/runs/<value as a safe folder name>/seed<N>``."""
    slug = re.sub(r"[^A-Za-z0-9._=-]+", "_", value.replace(":", "_").replace(",", "_"))
    return Path(out) / "runs" / slug / f"seed{seed}"


def compare(
    base: Config,
    axis: str,
    values: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    *,
    k: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
    command: str = "",
) -> ComparisonResult:
    """Train and evaluate every (value, seed) cell not already done; write the report.

    ``axis`` is ``objective``, ``prior`` or ``likelihood``; ``k`` defaults to
    ``base.eval_k``. ``command`` (how the comparison was launched) goes into the report.
    """
    if axis not in AXES:
        raise ConfigError(f"compare: unknown axis {axis!r}; valid choices: {', '.join(AXES)}")
    values, seeds = list(values), list(seeds)
    for what, items in ((f"{axis} values", values), ("seeds", seeds)):
        if not items or len(set(items)) != len(items):
            raise ConfigError(f"compare: {what} must be non-empty and distinct, got {items}")
    configs = {value: base.replace(**{axis: value}) for value in values}  # validates each
    k = k or base.eval_k
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    total = len(values) * len(seeds)
    for value in values:
        for seed in seeds:
            path = cell_folder(out, value, seed)
            cfg = configs[value].replace(seed=seed, out=str(path))
            prefix = f"[{len(rows) + 1}/{total}] {axis}={value} seed={seed}"
            rows.append(_run_cell(cfg, axis, value, path, k, progress, log, prefix, out))
    report = write_report(out, axis, rows, base, seeds, k, EVAL_SEED, command)
    log(report.ranking_note or f"ranked by log p(x): {', '.join(report.ranking)}")
    log(f"comparison written to {out}/comparison.md, .csv and .png")
    return ComparisonResult(out, rows, report)


def _run_cell(
    cfg: Config,
    axis: str,
    value: str,
    path: Path,
    k: int,
    progress: bool,
    log: Callable[[str], None],
    prefix: str,
    out: Path,
) -> dict[str, Any]:
    from .train import train

    run = RunFolder(path)
    has_config = run.config_path.is_file()
    if has_config:
        _check_same_config(run, cfg, out)
    if run.read_info().get("finished") and run.checkpoint_path.is_file():
        log(f"{prefix}: finished earlier, not run again")
    elif has_config and run.checkpoint_path.is_file():
        log(f"{prefix}: resuming the interrupted run")
        train(resume=path, progress=progress, log=log)
    else:
        log(f"{prefix}: training")
        train(cfg, overwrite=run.holds_run(), progress=progress, log=log)
    values = _matching_eval(run, k)
    if values is None:
        device = str(resolve_device(cfg.device))
        evaluate(path, k=k, seed=EVAL_SEED, device=device)
        values = json.loads(run.eval_path.read_text())
    metrics = run.read_metrics()
    log(f"{prefix}: log p(x) {values['log_px']:.2f} {values['units']} (K={k})")
    return {
        axis: value,
        "seed": cfg.seed,
        "run_dir": str(path.relative_to(out)),
        "epochs": len(metrics),
        "final_test_elbo": metrics[-1]["test_elbo"] if metrics else float("nan"),
        "train_seconds": round(sum(row["seconds"] for row in metrics), 1),
        **{name: values[name] for name in _EVAL_COLUMNS},
        "test_elbo_curve": [row["test_elbo"] for row in metrics],
    }


_EVAL_COLUMNS = (
    "log_px",
    "log_px_se",
    "log_px_mc_se",
    "elbo",
    "reconstruction",
    "kl",
    "active_units",
    "latent_dim",
    "bits_per_dim",
    "scale",
    "units",
    "k",
)


def _matching_eval(run: RunFolder, k: int) -> dict[str, Any] | None:
    """The cell's eval.json if it was made with these settings (K, seed, own test split)."""
    try:
        values = json.loads(run.eval_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = values.get("k") == k and values.get("seed") == EVAL_SEED
    own_data = values.get("split") == "test" and values.get("dataset") == run.read_config().dataset
    return values if same and own_data else None


def _check_same_config(run: RunFolder, cfg: Config, out: Path) -> None:
    existing = run.read_config().to_dict()
    wanted = cfg.to_dict()
    info = run.read_info()
    requested = info.get("dataset_requested", existing["dataset"])
    different = sorted(
        f"{key}: {existing[key]!r} there, {wanted[key]!r} now"
        for key in wanted
        if key not in ("out", "dataset") and existing.get(key) != wanted[key]
    )
    if wanted["dataset"] not in (existing["dataset"], requested):
        different.append(f"dataset: {requested!r} there, {wanted['dataset']!r} now")
    if different:
        raise ConfigError(
            f"{run.path} holds a run made with other settings ({'; '.join(different)}); this "
            f"comparison folder was started with them. Use another --out than {out}, or "
            "delete that cell's folder to rerun it"
        )
