"""Comparisons: a grid of config values x seeds, everything else fixed.

The grid maps config keys to the values to try (``{"latent_dim": [2, 10], "prior":
["standard-normal", "mog"]}``); its cartesian product times the seeds gives the cells.
Each cell is an ordinary run: its configuration goes to
``OUT/runs/<values>/seed<N>/config-request.toml``, then ``python -m pyro_vae train``
and ``python -m pyro_vae evaluate`` run it as subprocesses (``jobs`` cells at a time,
one thread each; their output goes to the cell's ``compare.log``). Every cell is
evaluated the same way: its test split, the same K importance samples, the same
evaluation seed. The comparison folder gets ``comparison.csv``, ``comparison.md`` and
``comparison.png`` (see :mod:`pyro_vae.app.comparison_report`).

Comparisons resume: a finished cell whose ``eval.json`` matches the evaluation settings
is read back, not run again; an interrupted run continues from its checkpoint. A cell
folder holding a run with another configuration is an error rather than a silent mix
of settings. :func:`cell_commands` gives the shell lines instead, for a job scheduler.

Example::

    result = compare(Config(dataset="mnist5k", epochs=30),
                     {"objective": ["elbo", "iwae:k=5"], "latent_dim": [2, 10]},
                     seeds=[0, 1, 2], out="comparisons/iwae", jobs=4)
    print(result.markdown)
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError, PyroVAEError
from .atomic import atomic_write_text
from .cli_env import DIE_WITH_READER
from .comparison_report import CONDITIONAL, Report, label_of, score_name, write_report
from .config import Config, check_config_argument, check_count
from .run_folder import COMPARE_FILES, RunFolder

__all__ = [
    "AXES",
    "EVAL_SEED",
    "Cell",
    "CompareError",
    "ComparisonResult",
    "cell_commands",
    "compare",
    "format_value",
    "parse_grid",
    "parse_vary",
    "plan_cells",
]

AXES = ("objective", "prior", "likelihood")  # the shorthands --objectives, --priors, --likelihoods
EVAL_SEED = 0
REQUEST, LOG = COMPARE_FILES  # a cell's request and log: training may start beside them
INTERRUPTED = "interrupted"  # a cell's child stopped by Ctrl-C: not a failure
INTERRUPTED_STATUS = 130  # pyro-vae's exit status after a Ctrl-C
_NOT_VARIED = {"seed": "give the seeds with --seeds", "out": "give the folder with --out"}


class CompareError(PyroVAEError):
    """Some cells of a comparison failed; the others finished and are in the report."""


@dataclass
class ComparisonResult:
    out: Path
    rows: list[dict[str, Any]]
    report: Report

    @property
    def markdown(self) -> str:
        return self.report.markdown


@dataclass(frozen=True)
class Cell:
    """One (values, seed) point of the grid: its config, folder and place in the grid."""

    index: int
    values: dict[str, str]  # key -> value as written in the report
    seed: int
    config: Config

    @property
    def path(self) -> Path:
        return Path(self.config.out)

    @property
    def name(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.values.items())


# -- the grid -------------------------------------------------------------------------------------


def format_value(value: Any) -> str:
    """A value as ``--vary`` writes it: ``[400,200]`` for a list, JSON for a table."""
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def parse_vary(text: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2,...`` -> the config key and its values, converted to the key's type.

    Values are separated by commas; brackets hold a value with commas of its own: a
    list for ``hidden``, or an objective spec with options. Tables (``prior_args``)
    are JSON objects, as their flags take them. ``-`` may stand for ``_``.

    Example:
        >>> parse_vary("latent-dim=2,10,50")
        ('latent_dim', [2, 10, 50])
        >>> parse_vary("hidden=[400,200],64")
        ('hidden', [[400, 200], [64]])
        >>> parse_vary("objective=elbo,[renyi:alpha=0.5,k=5]")
        ('objective', ['elbo', 'renyi:alpha=0.5,k=5'])
        >>> parse_vary('prior_args={"scale":1},{"scale":2,"df":3}')
        ('prior_args', [{'scale': 1}, {'scale': 2, 'df': 3}])
        >>> parse_vary("conditional-prior=false,true")
        ('conditional_prior', [False, True])
    """
    key, sep, rest = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise ConfigError(f"--vary {text!r}: expected KEY=V1,V2,..., e.g. --vary latent_dim=2,10")
    types = {f.name: f.type for f in fields(Config)}
    if key in _NOT_VARIED:
        raise ConfigError(f"--vary {key}: {key} is not varied with --vary; {_NOT_VARIED[key]}")
    if key not in types:
        valid = ", ".join(sorted(set(types) - set(_NOT_VARIED)))
        raise ConfigError(f"--vary: unknown config key {key!r}; valid keys: {valid}")
    return key, [_convert(key, types[key], token) for token in _split(key, rest)]


def _split(key: str, text: str) -> list[str]:
    """Split at the commas outside brackets and braces."""
    tokens, depth, start = [], 0, 0
    for i, char in enumerate(text + ","):
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if depth < 0 or (depth > 0 and i == len(text)):
            raise ConfigError(f"--vary {key}: unbalanced brackets in {text!r}")
        if char == "," and depth == 0:
            tokens.append(text[start:i].strip())
            start = i + 1
    if "" in tokens:
        raise ConfigError(f"--vary {key}: empty value in {text!r}; separate values with commas")
    return tokens


def _convert(key: str, kind: str, token: str) -> Any:
    inner = token[1:-1] if token.startswith("[") and token.endswith("]") else token
    if kind == "dict":
        try:
            table = json.loads(token)
        except json.JSONDecodeError:
            table = None
        if not isinstance(table, dict):
            raise ConfigError(
                f"--vary {key}: {token!r} is not a JSON object; write e.g. --vary "
                f'\'{key}={{"scale":1}},{{"scale":2}}\''
            )
        return table
    if kind == "bool":
        if token.lower() not in ("true", "false"):
            raise ConfigError(f"--vary {key}: {token!r} is not true or false; write e.g. "
                              f"--vary {key}=false,true")  # fmt: skip
        return token.lower() == "true"
    try:
        if kind == "int":
            return int(token)
        if kind == "float":
            return float(token)
        if kind == "list[int]" or (kind == "int | list[int]" and inner != token):
            return [int(item) for item in inner.split(",")]
        if kind == "int | list[int]":
            return int(token)
    except ValueError:
        what = {"int": "an integer", "float": "a number", "int | list[int]": "an integer or a "
                "bracketed list of integers"}.get(kind, "a list of integers")  # fmt: skip
        example = {
            "list[int]": "'hidden=[400,200],[64]'",
            "int | list[int]": f"'{key}=150,[100,50]'",
        }.get(kind, f"{key}=2,10")
        raise ConfigError(
            f"--vary {key}: {token!r} is not {what}; write e.g. --vary {example}"
        ) from None
    return inner


def parse_grid(
    vary: Sequence[str] = (), shorthands: Mapping[str, Sequence[str] | None] | None = None
) -> dict[str, list[Any]]:
    """The grid of ``--vary`` flags plus shorthands such as ``{"objective": [...]}``.

    Example:
        >>> parse_grid(["latent_dim=2,10"], {"prior": ["standard-normal", "mog"]})
        {'latent_dim': [2, 10], 'prior': ['standard-normal', 'mog']}
    """
    pairs = [parse_vary(text) for text in vary]
    for key, words in (shorthands or {}).items():
        if words:
            pairs.append(parse_vary(f"{key}=" + ",".join(f"[{word}]" for word in words)))
    grid: dict[str, list[Any]] = {}
    for key, values in pairs:
        if key in grid:
            raise ConfigError(f"compare: {key} is varied twice; give its values in one --vary")
        grid[key] = values
    if not grid:
        raise ConfigError(
            "compare: nothing to vary; give --vary KEY=V1,V2 (or --objectives, --priors, "
            "--likelihoods)"
        )
    return grid


def plan_cells(
    base: Config, grid: Mapping[str, Sequence[Any]], seeds: Sequence[int], out: str | Path
) -> list[Cell]:
    """Every (values, seed) cell of the grid, in order, each config validated by Config."""
    check_config_argument(base, "compare")
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise ConfigError(f"compare: seeds must be a list of ints, e.g. [0, 1, 2]; got {seeds!r}")
    seeds = list(seeds)
    if not isinstance(grid, Mapping):
        raise ConfigError(
            "compare: the grid must be a dict of config keys to lists of values, e.g. "
            f"{{'objective': ['elbo', 'iwae:k=5']}}; got a {type(grid).__name__}"
        )
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise ConfigError(
                f"compare: {key} takes a list of values, e.g. {{{key!r}: [{values!r}]}}; "
                f"got {values!r}"
            )
    if not grid:
        raise ConfigError("compare: the grid is empty; give at least one key to vary")
    fixed = sorted(set(grid) & set(_NOT_VARIED))
    if fixed:
        raise ConfigError(f"compare: {fixed[0]} cannot be varied; {_NOT_VARIED[fixed[0]]}")
    for key, values in grid.items():
        shown = [format_value(v) for v in values]
        if not shown or len(set(shown)) != len(shown):
            raise ConfigError(f"compare: {key} values must be non-empty and distinct, got {shown}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"compare: seeds must be non-empty and distinct, got {seeds}")
    out = Path(out).resolve()
    cells, folders = [], {}
    for combo in itertools.product(*grid.values()):
        changes = dict(zip(grid, combo, strict=True))
        config = base.replace(**changes)  # validates every value, naming its key
        values = {key: format_value(value) for key, value in changes.items()}
        folder = _slug(label_of(values, list(values)))
        if folders.setdefault(folder, values) != values:
            raise ConfigError(
                f"compare: {folders[folder]} and {values} would share the folder runs/{folder}; "
                "give values that differ in more than punctuation"
            )
        for seed in seeds:
            path = out / "runs" / folder / f"seed{seed}"
            cells.append(
                Cell(len(cells) + 1, values, seed, config.replace(seed=seed, out=str(path)))
            )
    return cells


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "_"


# -- what each cell still needs -------------------------------------------------------------------


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", "pyro_vae", *args]


def _steps(cell: Cell, k: int) -> tuple[str, list[list[str]]]:
    """What the cell still needs (a word for the log, the commands), after checking its folder."""
    run = RunFolder(cell.path)
    has_config = run.config_path.is_file()
    if has_config:
        _check_same_config(run, cell.config)
    evaluate = _python("evaluate", str(cell.path), "--k", str(k), "--seed", str(EVAL_SEED),
                       "--device", cell.config.device)  # fmt: skip
    if run.read_info().get("finished") and run.checkpoint_path.is_file():
        return ("done", []) if _matching_eval(run, k) else ("evaluating", [evaluate])
    if has_config and run.checkpoint_path.is_file():
        train = _python("train", "--resume", str(cell.path), "--no-progress")
        return "resuming the interrupted run", [train, evaluate]
    train = _python("train", "--config", str(cell.path / REQUEST), "--out", str(cell.path),
                    "--no-progress", *["--overwrite"] * run.holds_run())  # fmt: skip
    return "training", [train, evaluate]


def _write_request(cell: Cell) -> None:
    cell.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cell.path / REQUEST, cell.config.to_toml())


def cell_commands(
    base: Config,
    grid: Mapping[str, Sequence[Any]],
    seeds: Sequence[int],
    out: str | Path,
    *,
    k: int | None = None,
) -> list[str]:
    """One shell line per cell still to do (train && evaluate), for a job scheduler.

    Writes each cell's config-request.toml; runs nothing. After the lines have run,
    :func:`compare` with the same arguments finds every cell done and writes the report.
    """
    check_config_argument(base, "compare")
    check_count(k, "k", "compare")
    k = base.eval_k if k is None else k
    lines = []
    for cell in plan_cells(base, grid, seeds, out):
        _, steps = _steps(cell, k)
        if steps:
            _write_request(cell)
            lines.append(" && ".join(shlex.join(step) for step in steps))
    return lines


# -- running --------------------------------------------------------------------------------------


def compare(
    base: Config,
    grid: Mapping[str, Sequence[Any]],
    seeds: Sequence[int],
    out: str | Path,
    *,
    k: int | None = None,
    jobs: int = 1,
    progress: bool = True,
    log: Callable[[str], None] = print,
    command: str = "",
) -> ComparisonResult:
    """Train and evaluate every cell not already done, ``jobs`` at a time; write the report.

    ``k`` defaults to ``base.eval_k``; ``progress`` relays each epoch's line; ``command``
    (how the comparison was launched) goes into the report. Raises CompareError, after
    writing the report of the cells that finished, if any cell failed.

    Example (``pyro_vae.compare``; trains two runs, so not run here)::

        base = Config(dataset="mnist5k", epochs=1, hidden=[64], latent_dim=2, eval_k=20)
        result = compare(base, {"objective": ["elbo", "iwae:k=5"]}, [0], "runs/cmp")
        result.rows[0]["log_px"], result.markdown
    """
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    check_config_argument(base, "compare")
    check_count(k, "k", "compare")
    k = base.eval_k if k is None else k
    if RunFolder(out).holds_run():
        raise ConfigError(
            f"--out {out} is the folder of a training run, not of a comparison; give a new "
            "folder (a comparison keeps its runs in DIR/runs/)"
        )
    cells = plan_cells(base, grid, seeds, out)
    plans = {cell.index: _steps(cell, k) for cell in cells}  # checks every folder first
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runner = _Runner(log, len(cells), progress)
    todo = [cell for cell in cells if plans[cell.index][1]]
    for cell in todo:
        _write_request(cell)
    sizes = " x ".join(f"{len(v)} {key}" for key, v in grid.items())
    seed_count = len(cells) // math.prod(len(v) for v in grid.values())
    runner.say(
        f"compare: {len(cells)} cells ({sizes} x {seed_count} seed{'s' * (seed_count > 1)}), "
        f"{len(todo)} to run, {min(jobs, len(todo) or 1)} at a time, one thread each; each "
        f"cell's output goes to its {LOG}"
    )
    for cell in cells:
        if not plans[cell.index][1]:
            runner.say(f"{runner.prefix(cell)}: finished earlier, not run again")
            runner.note_once(cell)
    failures: dict[int, str] = {}
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {cell.index: pool.submit(runner.run_cell, cell, plans[cell.index][0],
                                           plans[cell.index][1]) for cell in todo}  # fmt: skip
        for cell in todo:
            error = futures[cell.index].result()
            if error:
                failures[cell.index] = error
            else:
                runner.note_once(cell)
    except BaseException:  # Ctrl-C or a bug: the children stop at their last checkpoint
        runner.stop()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return _finish(cells, failures, out, base, seeds, k, command, runner.say)


class _Runner:
    """Runs cells' commands as child processes from several threads, and reports on them."""

    def __init__(self, log: Callable[[str], None], total: int, progress: bool):
        self.log, self.total, self.progress = log, total, progress
        self.lock = threading.Lock()
        self.children: set[subprocess.Popen] = set()
        self.stopped = False
        self.notes: set[str] = set()

    def say(self, message: str) -> None:
        with self.lock:
            self.log(message)

    def prefix(self, cell: Cell) -> str:
        return f"[{cell.index}/{self.total}] {cell.name} seed={cell.seed}"

    def note_once(self, cell: Cell) -> None:
        """Print a run's dataset note (e.g. mnist replaced by mnist5k) once per comparison."""
        note = RunFolder(cell.path).read_info().get("dataset_note", "")
        if note and note not in self.notes:
            self.notes.add(note)
            self.say(f"note: {note}")

    def stop(self) -> None:
        """Interrupt every running child (training saves its checkpoint) and start no more."""
        with self.lock:
            self.stopped = True
            for child in self.children:
                child.send_signal(signal.SIGINT)

    def run_cell(self, cell: Cell, what: str, steps: list[list[str]]) -> str:
        """Run the cell's commands one after the other; "" on success, else the error line."""
        prefix, started = self.prefix(cell), time.monotonic()
        self.say(f"{prefix}: {what}")
        on_epoch = (lambda line: self.say(f"{prefix}: {line}")) if self.progress else None
        for step in steps:
            error = self.run_step(step, cell.path / LOG, on_epoch)
            if error == INTERRUPTED:
                self.say(f"{prefix}: interrupted; the same command continues it")
                return error
            if error:
                seconds = time.monotonic() - started
                self.say(f"{prefix}: FAILED after {seconds:.1f} s: {error} (see {cell.path / LOG})")
                return error
        values = json.loads(RunFolder(cell.path).eval_path.read_text())
        bad = values.get("not_finite")
        self.say(
            f"{prefix}: done in {time.monotonic() - started:.1f} s, {score_line(values)}"
            + (f"; warning: {', '.join(bad)} not finite (see {cell.path / LOG})" if bad else "")
        )
        return ""

    def run_step(
        self, argv: list[str], log_path: Path, on_epoch: Callable[[str], None] | None
    ) -> str:
        """Run one command on one torch thread, its output to ``log_path``, epoch lines to
        ``on_epoch``; "" on success, else its error line."""
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "PYTHONUNBUFFERED": "1", DIE_WITH_READER: "1"}  # fmt: skip
        lines: list[str] = []
        with log_path.open("a") as handle:
            handle.write(f"$ {shlex.join(argv)}\n")
            handle.flush()
            with self.lock:
                if self.stopped:
                    return "stopped before it started"
                child = subprocess.Popen(  # its own session: a Ctrl-C reaches it once, by stop()
                    argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                    start_new_session=True,
                )  # fmt: skip
                self.children.add(child)
            with child:
                for line in child.stdout:
                    handle.write(line)
                    lines.append(line.strip())
                    if on_epoch and line.startswith("epoch "):
                        on_epoch(line.strip())
            with self.lock:
                self.children.discard(child)
        if child.returncode == 0:
            return ""
        if child.returncode in (INTERRUPTED_STATUS, -signal.SIGINT):
            return INTERRUPTED
        errors = [line for line in lines if line.startswith("pyro-vae: error:")]
        last = errors or [line for line in lines if line] or [f"exit status {child.returncode}"]
        return last[-1].removeprefix("pyro-vae: error: ")


def _finish(cells, failures, out, base, seeds, k, command, say) -> ComparisonResult:
    """Write the report of the cells that finished; raise CompareError naming failed ones."""
    failed = [f"{cell.name} seed={cell.seed}: {failures[cell.index]}" for cell in cells
              if cell.index in failures]  # fmt: skip
    rows = [_row(cell, out, k) for cell in cells if cell.index not in failures]
    error = CompareError(
        f"compare: {len(failed)} of {len(cells)} cells failed ({'; '.join(failed)}); fix the "
        "cause and rerun the same command: finished cells are not run again"
    )
    if not rows:
        raise error
    report = write_report(out, list(cells[0].values), rows, base, seeds, k, EVAL_SEED, command,
                          failed)  # fmt: skip
    if report.ranking_note or report.ranking:
        score = score_name([row["scale"] for row in rows])
        say(report.ranking_note or f"ranked by {score}: {', '.join(report.ranking)}")
    if report.not_finite:
        say(f"not finite, left out of the means and the ranking: {'; '.join(report.not_finite)}")
    for cell in cells:  # what evaluate warned about (a score below the baseline, say)
        if cell.index not in failures and (warning := _eval_warning(cell)):
            say(f"{cell.name} seed={cell.seed}: {warning}")
    say(f"comparison written to {out}/comparison.md, .csv and .png")
    if failed:
        raise error
    return ComparisonResult(out, rows, report)


def score_line(values: dict[str, Any]) -> str:
    """A cell's scores from its eval.json, in words: log p(x), or log p(x|y) for a CVAE,
    and an m2 classifier's test accuracy.

    Example:
        >>> score_line({"log_px": -90.123, "units": "nats", "k": 50, "conditional": True})
        'log p(x|y) -90.12 nats (K=50)'
        >>> score_line({"log_px": -95.0, "units": "nats", "k": 50, "accuracy": 0.7712})
        'log p(x) -95.00 nats (K=50), test accuracy 77.1%'
    """
    name = "log p(x|y)" if values.get("conditional") else "log p(x)"
    line = f"{name} {values['log_px']:.2f} {values['units']} (K={values['k']})"
    if values.get("accuracy") is not None:
        line += f", test accuracy {100 * values['accuracy']:.1f}%"
    return line


def _eval_warning(cell: Cell) -> str:
    """The warning line in the cell's eval.json, or ''."""
    values = json.loads(RunFolder(cell.path).eval_path.read_text())
    warning = values.get("warning", "") if isinstance(values, dict) else ""
    return f"warning: {warning}" if warning else ""


def _row(cell: Cell, out: Path, k: int) -> dict[str, Any]:
    run = RunFolder(cell.path)
    values = json.loads(run.eval_path.read_text())
    metrics = run.read_metrics()
    row = {
        **cell.values,
        "seed": cell.seed,
        "dataset_used": run.read_info().get("dataset_used", values["dataset"]),
        "run_dir": str(cell.path.relative_to(out.resolve())),
        "epochs": len(metrics),
        "final_test_elbo": metrics[-1]["test_elbo"] if metrics else float("nan"),
        "train_seconds": round(sum(row["seconds"] for row in metrics), 1),
        **{name: values[name] for name in _EVAL_COLUMNS},
        "accuracy": values.get("accuracy"),  # an m2's classifier q(y|x); None for other models
        "scale": values["scale"] + (CONDITIONAL if values.get("conditional") else ""),
        "test_elbo_curve": [row["test_elbo"] for row in metrics],
    }
    row.update(cell.values)  # a varied key beats the evaluation's field of that name (latent_dim)
    return row


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
    epochs = len(run.read_metrics())
    same = values.get("k") == k and values.get("seed") == EVAL_SEED
    same = same and values.get("trained_epochs", epochs) == epochs
    own_data = values.get("split") == "test" and values.get("dataset") == run.read_config().dataset
    return values if same and own_data else None


def _check_same_config(run: RunFolder, cfg: Config) -> None:
    """Refuse a cell folder trained with other settings (eval_k only changes the evaluation)."""
    existing = run.read_config().to_dict()
    wanted = cfg.to_dict()
    info = run.read_info()
    requested = info.get("dataset_requested", existing["dataset"])
    if not wanted["batch_size"] and isinstance(info.get("num_train"), int):
        # training made the automatic batch size a number for its data and recorded it
        from .trainer import auto_batch_size  # torch and Pyro load only when a cell exists

        sized = auto_batch_size(cfg, info["num_train"], info.get("world_size", 1))
        wanted["batch_size"] = sized.batch_size
    if wanted["likelihood_scale"] == "fixed" and not wanted["likelihood_scale_value"]:
        # training took the fixed scale from the data and recorded it (start_likelihood_from_data)
        wanted["likelihood_scale_value"] = existing.get("likelihood_scale_value")
    different = sorted(
        f"{key}: {existing[key]!r} there, {wanted[key]!r} now"
        for key in wanted
        if key not in ("out", "dataset", "eval_k") and existing.get(key) != wanted[key]
    )
    if wanted["dataset"] not in (existing["dataset"], requested):
        different.append(f"dataset: {requested!r} there, {wanted['dataset']!r} now")
    if different:
        raise ConfigError(
            f"{run.path} holds a run made with other settings ({'; '.join(different)}); this "
            "comparison folder was started with them. Use another --out, or delete that "
            "cell's folder to rerun it"
        )
