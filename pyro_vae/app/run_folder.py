"""The run folder: config.toml, run.json, metrics.csv, checkpoint.pt, eval.json and plots/.

Every file is written atomically. A folder holding another run is never
overwritten unless asked, and an unwritable folder fails before any training.

Example:
    >>> import tempfile
    >>> run = RunFolder.create(tempfile.mkdtemp() + "/run")
    >>> run.write_metrics([{"epoch": 1, "train_elbo": -120.5}])
    >>> run.read_metrics()
    [{'epoch': 1, 'train_elbo': -120.5}]
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

from ..errors import RunFolderError
from .atomic import atomic_write_text
from .config import Config

__all__ = ["RunFolder", "default_run_dir"]

RUN_FILES = ("config.toml", "run.json", "metrics.csv", "checkpoint.pt", "eval.json")


def default_run_dir(root: str | Path = "runs") -> Path:
    """``runs/<timestamp>``, with a suffix if that folder already exists."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    path = Path(root) / stamp
    suffix = 1
    while path.exists():
        path = Path(root) / f"{stamp}_{suffix}"
        suffix += 1
    return path


class RunFolder:
    """Paths and atomic writers for one run's files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / "config.toml"
        self.info_path = self.path / "run.json"
        self.metrics_path = self.path / "metrics.csv"
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.eval_path = self.path / "eval.json"
        self.plots = self.path / "plots"

    @classmethod
    def create(cls, path: str | Path, overwrite: bool = False) -> RunFolder:
        """A fresh run folder; refuses one that holds another run unless ``overwrite``."""
        run = cls(path)
        if run.holds_run():
            if not overwrite:
                raise RunFolderError(
                    f"{run.path} already holds a run; pass --overwrite to replace it, "
                    "--resume to continue it, or choose another --out"
                )
            for name in RUN_FILES:
                (run.path / name).unlink(missing_ok=True)
            shutil.rmtree(run.plots, ignore_errors=True)
        run.check_writable()
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        """An existing run folder (for resume, evaluate, sample)."""
        run = cls(path)
        if not run.path.is_dir():
            raise RunFolderError(f"{run.path}: no such run folder")
        if not run.config_path.is_file() or not run.checkpoint_path.is_file():
            raise RunFolderError(
                f"{run.path}: not a finished or checkpointed run (needs config.toml and "
                "checkpoint.pt)"
            )
        return run

    def holds_run(self) -> bool:
        return any((self.path / name).exists() for name in RUN_FILES)

    def check_writable(self) -> None:
        """Create the folders and prove a file can be written there, now rather than later."""
        try:
            self.plots.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as err:
            raise RunFolderError(
                f"cannot write to run folder {self.path} ({err.strerror or err}); "
                "choose a writable --out"
            ) from None

    # -- files ----------------------------------------------------------------------------------

    def write_config(self, cfg: Config) -> None:
        atomic_write_text(self.config_path, cfg.to_toml())

    def read_config(self) -> Config:
        return Config.from_file(self.config_path)

    def write_info(self, info: dict[str, Any]) -> None:
        atomic_write_text(self.info_path, json.dumps(info, indent=2, sort_keys=True) + "\n")

    def read_info(self) -> dict[str, Any]:
        try:
            return json.loads(self.info_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def write_json(self, path: Path, values: dict[str, Any]) -> None:
        atomic_write_text(path, json.dumps(values, indent=2, sort_keys=True) + "\n")

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite metrics.csv with ``rows`` (one per epoch), atomically."""
        if not rows:
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.metrics_path, buffer.getvalue())

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        with self.metrics_path.open(newline="") as handle:
            return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _number(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
