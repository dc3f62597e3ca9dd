"""The run folder: config.toml, run.json, metrics.csv, checkpoint.pt, eval.json and plots/.

Every file is written atomically. A run folder is one whose run.json names the
``pyro_vae_version`` that wrote it. Training makes a new folder or uses an empty one;
it never writes into an existing folder that holds anything else, even with
``overwrite``. A folder holding another run is never overwritten unless asked, and even
then only the files the run owns (:func:`owned_files`: the run's files, evaluate's
scores and pyro-vae's plots, never a user's own file beside them) are set aside until
the new run has its first checkpoint. One process at a time writes a run folder: it
holds an exclusive lock (``.lock``, with its pid) from :meth:`RunFolder.create` or
``RunFolder.open(path, write=True)`` until :meth:`RunFolder.release` or its exit.
Paths are checked before anything is made (names of at most 255 bytes, valid text).

Example:
    >>> import tempfile
    >>> run = RunFolder.create(tempfile.mkdtemp() + "/run")
    >>> run.write_metrics([{"epoch": 1, "train_elbo": -120.5}])
    >>> run.read_metrics()
    [{'epoch': 1, 'train_elbo': -120.5}]
    >>> run.release()
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import errno
import fcntl
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError, RunFolderError
from .atomic import atomic_write_text, stale_temp_files
from .config import Config

__all__ = [
    "RunFolder",
    "default_run_dir",
    "check_path",
    "explain_system_error",
    "owned_files",
    "run_record",
    "refuse_run_record",
]

RUN_FILES = ("config.toml", "run.json", "metrics.csv", "checkpoint.pt", "eval.json")
EVAL_FILES = "eval-*.json"  # evaluate's scores of other data or the training split
TRAINING_PLOTS = (  # what training draws into plots/
    "losses.png",
    "reconstructions.png",
    "samples.png",
    "latent.png",
    "manifold.png",
    "class-samples.png",
    "analogies.png",
)
PLOT_FILES = (  # and what evaluate (confusion) and sample draw there
    *TRAINING_PLOTS,
    "confusion.png",
    "confusion-*.png",
    "prior-samples-*.png",
    "samples-label*.png",
)
COMPARE_FILES = ("config-request.toml", "compare.log")  # a compare cell's, before its run
TRAINING_FILES = ("config.toml", "run.json", "metrics.csv", "checkpoint.pt")  # under the lock
LOCK_FILE = ".lock"
PREVIOUS = ".previous-run"  # the replaced run, until the new one has a checkpoint
SETTING_ASIDE = ".previous-run.partial"  # files on their way in or out of PREVIOUS
NAME_MAX = 255  # bytes in one file or folder name, on every common filesystem
PATH_MAX = 4096

_held: dict[str, tuple[int, Path]] = {}  # real folder path -> (lock fd, lock file) of this process


def default_run_dir(root: str | Path = "runs") -> Path:
    """``runs/<timestamp>``, with a suffix if that folder already exists."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    path = Path(root) / stamp
    suffix = 1
    while path.exists():
        path = Path(root) / f"{stamp}_{suffix}"
        suffix += 1
    return path


def check_path(path: str | Path, fix: str, text: bool = True) -> None:
    """Raise RunFolderError unless every name in ``path`` fits a filesystem (and, with
    ``text``, the path is valid UTF-8, as config.toml must hold it).

    Example:
        >>> check_path("runs/" + "x" * 300, "choose a shorter --out")
        Traceback (most recent call last):
        ...
        pyro_vae.errors.RunFolderError: runs/xxx...: the name xxx... is 300 bytes long, ...
    """
    shown = _shown(path)
    try:
        encoded = os.fsencode(path)  # undecodable bytes come back as they were
        if text:
            str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise RunFolderError(
            f"{shown!r}: the path is not valid UTF-8 text, which config.toml must hold; {fix}"
        ) from None
    long_names = [name for name in encoded.split(b"/") if len(name) > NAME_MAX]
    if long_names:
        name = os.fsdecode(long_names[0])
        raise RunFolderError(
            f"{shown}: the name {name[:20]}... is {len(long_names[0])} bytes long, more "
            f"than the {NAME_MAX} a filesystem allows; {fix}"
        )
    if len(encoded) >= PATH_MAX:
        raise RunFolderError(f"{shown}: the path is longer than {PATH_MAX} bytes; {fix}")


_OS_FIXES = {
    errno.ENAMETOOLONG: f"use a shorter path (at most {NAME_MAX} bytes per name)",
    errno.ENOSPC: "free disk space and rerun",
    errno.EDQUOT: "free disk space (the quota is reached) and rerun",
    errno.EFBIG: "raise the file-size limit (ulimit -f) and rerun",
    errno.EACCES: "choose a location you may write to, or fix its permissions",
    errno.EPERM: "choose a location you may write to, or fix its permissions",
    errno.EROFS: "choose a location on a writable disk",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "give a file, not a folder",
}


_MEMORY_FIXES = {
    "train": "use a smaller model (--hidden, --latent-dim), --batch-size or dataset",
    "sample": "draw fewer samples (--n)",
    "evaluate": "use fewer importance samples (--k) or score fewer datapoints",
    "impute": "use fewer particles (--k) or draws (--draws), or impute fewer datapoints",
    "compare": "run fewer cells at once (--jobs) or smaller ones (--hidden, --batch-size)",
    "bench": "measure smaller sizes (drop --full)",
}


def explain_system_error(err: OSError | UnicodeError | MemoryError, command: str = "train") -> str:
    """One line for a failure caused by the user's paths, disk or sizes: cause, then the fix,
    for ``command`` where it depends on it (a failed allocation).

    Example:
        >>> explain_system_error(OSError(28, "No space left on device", "runs/a/plots/x.png"))
        'No space left on device: runs/a/plots/x.png; free disk space and rerun'
        >>> explain_system_error(MemoryError(), "sample")
        'out of memory; draw fewer samples (--n)'
    """
    if isinstance(err, OSError):
        name = os.fsdecode(err.filename) if isinstance(err.filename, bytes) else err.filename
        where = f": {_shown(name)}" if isinstance(name, str) else ""
        return (
            f"{err.strerror or err}{where}; {_OS_FIXES.get(err.errno, 'check the path and disk')}"
        )
    if isinstance(err, UnicodeError):
        return f"a path or text is not valid UTF-8 ({err}); use names of plain characters"
    return f"out of memory; {_MEMORY_FIXES.get(command, _MEMORY_FIXES['train'])}"


def _shown(path: str | Path) -> str:
    text = str(path)
    return text if len(text) <= 80 else text[:60] + "..."


def _busy(path: Path, holder: str) -> RunFolderError:
    return RunFolderError(
        f"{path}: another process{holder} is training into this run folder; wait for it to "
        "finish or stop it, or choose another --out"
    )


def _holds_another_run(path: Path) -> RunFolderError:
    return RunFolderError(
        f"{path} already holds a run; pass --overwrite to replace it, --resume to continue it, "
        "or choose another --out"
    )


def _not_a_run_folder(path: Path, entries: list[str]) -> RunFolderError:
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    return RunFolderError(
        f"{path} is not empty ({shown}) and holds no pyro-vae run (no run.json of one); "
        "training never writes into or clears such a folder, even with --overwrite: choose a "
        "new or empty folder for --out"
    )


def owned_files(folder: Path) -> list[str]:
    """The files of a run that pyro-vae wrote, relative to its ``folder``: RUN_FILES,
    eval-*.json and the PLOT_FILES in plots/. A user's own file is never among them.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> (folder / "plots").mkdir()
        >>> for name in ("run.json", "notes.txt", "plots/losses.png", "plots/mine.png"):
        ...     _ = (folder / name).write_text("")
        >>> owned_files(folder)
        ['run.json', 'plots/losses.png']
    """
    names = [name for name in RUN_FILES if (folder / name).is_file()]
    names += sorted(path.name for path in folder.glob(EVAL_FILES) if path.is_file())
    plots = folder / "plots"
    if plots.is_dir():
        drawn = {path for pattern in PLOT_FILES for path in plots.glob(pattern) if path.is_file()}
        names += sorted(f"plots/{path.name}" for path in drawn)
    return names


def run_record(path: str | Path) -> str | None:
    """The name, relative to its run folder, of the file of a training run's record that
    ``path`` names: config.toml, run.json, metrics.csv, checkpoint.pt or a plot that
    training drew, in a folder holding a pyro-vae run; None for any other path. Another
    command's output must never replace one (an ``evaluate --out RUN/run.json`` did, and the
    run lost its data fingerprint and range).

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "run.json").write_text('{"pyro_vae_version": "0"}')
        >>> run_record(folder / "run.json"), run_record(folder / "plots" / "latent.png")
        ('run.json', 'plots/latent.png')
        >>> run_record(folder / "eval-mine.json"), run_record(folder / "plots" / "mine.png")
        (None, None)
    """
    path = Path(path)
    folder, name = path.parent, path.name
    if folder.name == "plots" and name in TRAINING_PLOTS:
        folder, name = folder.parent, f"plots/{name}"
    elif name not in TRAINING_FILES:
        return None
    try:
        return name if RunFolder(folder).holds_run() else None
    except OSError:
        return None


def refuse_run_record(path: str | Path, flag: str) -> None:
    """ConfigError naming ``flag`` when ``path`` is a file of a training run's record
    (:func:`run_record`), which an output written there would replace."""
    if (record := run_record(path)) is not None:
        run = Path(path).parent.parent if "/" in record else Path(path).parent
        raise ConfigError(
            f"{flag} {path} is the {record} of the run in {run}, which this would replace; "
            "choose another file name"
        )


def _is_scaffolding(entry: Path) -> bool:
    """Whether ``entry`` is pyro-vae's own and holds nothing of a user's: a lock, a write
    probe, a compare cell's request and log, a write's temporary file, an empty plots/."""
    if entry.name in (LOCK_FILE, ".write-test", *COMPARE_FILES):
        return True
    if entry.name == "plots" and entry.is_dir() and not entry.is_symlink():
        return not any(entry.iterdir())
    name = entry.name
    return name.endswith(".tmp") and any(name.startswith(f".{n}.") for n in TRAINING_FILES)


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
        self._made: list[Path] = []  # folders create() made, deepest first

    @classmethod
    def create(cls, path: str | Path, overwrite: bool = False) -> RunFolder:
        """A fresh run folder, locked for this process.

        A folder holding another run is refused unless ``overwrite``; then the old
        run's files are set aside in ``.previous-run/`` until :meth:`confirm_replacement`
        (or put back by :meth:`restore_previous`). A non-empty folder that holds no run is
        refused before anything is made there. On failure nothing is left half-made.
        """
        run = cls(path)
        check_path(run.path, "choose another --out")
        run._refuse_if_locked()  # a run in its first moments has no run.json yet
        run._refuse_if_not_a_run_folder()
        made, locked = _missing_folders(run.path), False
        try:
            run.path.mkdir(parents=True, exist_ok=True)
            locked = run.acquire()
            run._settle()
            if run.holds_run():
                if not overwrite:
                    raise _holds_another_run(run.path)
                run.check_layout()
                run._set_aside_previous()
            run.check_writable()
        except OSError as err:
            run._undo(made, locked)
            raise RunFolderError(
                f"cannot write to run folder {run.path} ({err.strerror or err}); "
                "choose a writable --out"
            ) from None
        except BaseException:
            run._undo(made, locked)
            raise
        run._made = made
        return run

    @classmethod
    def check_can_create(cls, path: str | Path, overwrite: bool = False) -> None:
        """Refuse, touching nothing, a folder :meth:`create` would refuse: a bad path, a
        non-empty folder that holds no run, another run without ``overwrite``, or no writable
        folder to make it in (checked first, so a run fails before its data are loaded)."""
        run = cls(path)
        check_path(run.path, "choose another --out")
        run._refuse_if_locked()
        run._refuse_if_not_a_run_folder()
        if run._holds_run_or_its_set_aside() and not overwrite:
            raise _holds_another_run(run.path)
        run.check_layout()
        existing = next((p for p in (run.path, *run.path.parents) if p.exists()), Path("."))
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise RunFolderError(
                f"cannot write to run folder {run.path} ({existing} is not a writable folder); "
                "choose a writable --out"
            )

    @classmethod
    def open(cls, path: str | Path, write: bool = False) -> RunFolder:
        """An existing run folder: read-only (evaluate, sample), or with ``write`` locked
        for this process (resume), after tidying what an interrupted run left behind."""
        run = cls(path)
        check_path(run.path, "check the run folder's path", text=write)
        try:
            is_dir = run.path.is_dir()
        except OSError as err:
            raise RunFolderError(f"{run.path}: cannot be read ({err.strerror or err})") from None
        if not is_dir:
            raise RunFolderError(f"{run.path}: no such run folder")
        locked = write and run.acquire()
        if write:
            try:
                run._settle()
                run.check_layout()
            except OSError as err:
                run._undo([], locked)
                raise RunFolderError(
                    f"cannot write to run folder {run.path} ({err.strerror or err}); "
                    "make it writable"
                ) from None
            except RunFolderError:
                run._undo([], locked)
                raise
        # a run stopped in its first epoch has a config but no checkpoint: resume starts it afresh
        if not run.config_path.is_file() or not (write or run.checkpoint_path.is_file()):
            run._undo([], locked)
            kept = (
                f"; the run it replaced is kept in {run.path / PREVIOUS} and comes back on "
                f"--resume {run.path}"
                if (run.path / PREVIOUS / "checkpoint.pt").is_file()
                else ""
            )
            raise RunFolderError(
                f"{run.path}: not a finished or checkpointed run (needs config.toml and "
                f"checkpoint.pt){kept}"
            )
        return run

    def holds_run(self) -> bool:
        """Whether run.json here is a pyro-vae run's (it names the version that wrote it)."""
        return "pyro_vae_version" in self.read_info()

    def _holds_run_or_its_set_aside(self) -> bool:
        """:meth:`holds_run`, or a run set aside by a replacement not yet settled."""
        places = (self.path, self.path / PREVIOUS, self.path / SETTING_ASIDE)
        return any(RunFolder(place).holds_run() for place in places)

    def _refuse_if_not_a_run_folder(self) -> None:
        """RunFolderError for an existing folder that holds something but no run, so that
        nothing of a user's is written over, set aside or removed."""
        try:
            if not self.path.is_dir() or self._holds_run_or_its_set_aside():
                return
            entries = sorted(e.name for e in self.path.iterdir() if not _is_scaffolding(e))
        except OSError as err:
            raise RunFolderError(
                f"cannot read folder {self.path} ({err.strerror or err}); choose a new or "
                "empty folder for --out"
            ) from None
        if entries:
            raise _not_a_run_folder(self.path, entries)

    def check_writable(self) -> None:
        """Create the folders and prove a file can be written there, now rather than later."""
        try:
            self.plots_folder()
            probe = self.path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as err:
            raise RunFolderError(
                f"cannot write to run folder {self.path} ({err.strerror or err}); "
                "choose a writable --out"
            ) from None

    def check_layout(self) -> None:
        """RunFolderError, before any work, when a path the run writes is of the wrong kind:
        a folder where it keeps a file (config.toml, run.json, metrics.csv, checkpoint.pt,
        eval.json, a plot training draws) or a file where it keeps plots/. Such a folder
        failed only at its first write, after an epoch of training.

        Example:
            >>> import tempfile, pathlib
            >>> folder = pathlib.Path(tempfile.mkdtemp())
            >>> (folder / "metrics.csv").mkdir()
            >>> RunFolder(folder).check_layout()
            Traceback (most recent call last):
            ...
            pyro_vae.errors.RunFolderError: .../metrics.csv is a folder, where the run keeps ...
        """
        files = [self.path / name for name in (*TRAINING_FILES, "eval.json")]
        files += [self.plots / name for name in TRAINING_PLOTS]
        for path in files:
            if path.is_dir():
                raise RunFolderError(
                    f"{path} is a folder, where the run keeps its file {path.name}; move or "
                    "rename that folder and rerun"
                )
        self.check_plots()

    def plots_folder(self) -> Path:
        """plots/, made if missing; RunFolderError naming the fix when a file has its name."""
        self.check_plots()
        self.plots.mkdir(parents=True, exist_ok=True)
        return self.plots

    def check_plots(self) -> None:
        """RunFolderError when a file has the name of the run's plots/ folder."""
        if self.plots.exists() and not self.plots.is_dir():
            raise RunFolderError(
                f"{self.plots} is a file, where the run keeps its plots/ folder; move or rename "
                "that file and rerun"
            )

    # -- the lock -------------------------------------------------------------------------------

    def acquire(self) -> bool:
        """Hold the folder's lock until :meth:`release` or exit; refuse if another process does.

        Returns False (and does nothing) when this process holds it already.
        """
        key = os.path.realpath(self.path)
        if key in _held:
            return False
        lock = self.path / LOCK_FILE
        while True:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as err:
                raise RunFolderError(
                    f"cannot write to run folder {self.path} ({err.strerror or err}); make "
                    "it writable (a new run can also take another --out)"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = _pid_in(fd)
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise RunFolderError(
                        f"cannot lock run folder {self.path} ({err.strerror or err}); "
                        "use a folder on a local disk"
                    ) from None
                raise _busy(self.path, holder) from None
            if _same_file(fd, lock):
                break
            os.close(fd)  # its holder removed the file while we opened it: take the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held[key] = (fd, lock)
        return True

    def _refuse_if_locked(self) -> None:
        """Raise if another process holds the lock, without taking it or making any file."""
        holder = self.writer()
        if holder is not None:
            raise _busy(self.path, holder)

    def writer(self) -> str | None:
        """None, or `` (pid N)`` (maybe "") when another process holds the folder's lock (it
        trains the run); takes nothing and makes no file."""
        if os.path.realpath(self.path) in _held:
            return None
        try:
            fd = os.open(self.path / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # no lock file: nobody trains here
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # fails while a writer holds LOCK_EX
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return _pid_in(fd)
        finally:
            os.close(fd)  # closing also drops the shared lock, if it was granted
        return None

    def release(self) -> None:
        """Let other processes write here again (a no-op when this process holds no lock)."""
        _release(os.path.realpath(self.path))

    # -- replacing a run ------------------------------------------------------------------------

    def confirm_replacement(self) -> None:
        """Delete the run this one replaced (call after the new run's first checkpoint).

        A no-op when no run was replaced.
        """
        shutil.rmtree(self.path / PREVIOUS, ignore_errors=True)

    def restore_previous(self) -> None:
        """Remove what the new run wrote and put the replaced run back (call when training
        fails before its first checkpoint). A no-op when no run was replaced."""
        previous = self.path / PREVIOUS
        if not previous.is_dir():
            return
        self.checkpoint_path.unlink(missing_ok=True)  # first: a crash here settles the same way
        self._remove_owned()
        self._remove_stale_temp_files()
        os.rename(previous, self.path / SETTING_ASIDE)
        self._settle()

    def discard_unstarted(self) -> None:
        """Undo a run created here that failed before its first checkpoint, so that the same
        command can run again: a replaced run comes back (:meth:`restore_previous`); a fresh
        one's files go, with the folders :meth:`create` made."""
        if (self.path / PREVIOUS).is_dir():
            self.restore_previous()
            return
        if self.checkpoint_path.exists():
            return
        self._remove_owned()
        self._remove_stale_temp_files()
        self._undo(self._made, locked=True)

    def _remove_owned(self) -> None:
        """Remove the files this run wrote (:func:`owned_files`), and plots/ once empty."""
        for name in owned_files(self.path):
            (self.path / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # still holds a user's files
            self.plots.rmdir()

    def _set_aside_previous(self) -> None:
        """Move the old run's files (:func:`owned_files`) into PREVIOUS, via SETTING_ASIDE so
        that a crash midway leaves a state that :meth:`_settle` puts back."""
        aside = self.path / SETTING_ASIDE
        aside.mkdir()
        for name in owned_files(self.path):
            (aside / name).parent.mkdir(exist_ok=True)
            os.rename(self.path / name, aside / name)
        os.rename(aside, self.path / PREVIOUS)

    def _settle(self) -> None:
        """Finish what an interrupted process left (under the lock): files half set aside go
        back, a replacement without a checkpoint is undone, one with a checkpoint is kept,
        and temporary files of killed writes are removed."""
        aside = self.path / SETTING_ASIDE
        if aside.is_dir():  # nothing new was written while files were on their way
            _move_back(aside, self.path)
        if (self.path / PREVIOUS).is_dir():
            if self.checkpoint_path.is_file():
                self.confirm_replacement()
            else:
                self.restore_previous()
        self._remove_stale_temp_files()

    def _remove_stale_temp_files(self) -> None:
        for name in TRAINING_FILES:
            for stale in stale_temp_files(self.path / name):
                stale.unlink(missing_ok=True)
        (self.path / ".write-test").unlink(missing_ok=True)

    def _undo(self, made: list[Path], locked: bool) -> None:
        """Release a lock taken here and remove the (still empty) folders create() made."""
        if locked:
            self.release()
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                (folder / "plots").rmdir()
            with contextlib.suppress(OSError):
                folder.rmdir()

    # -- files ----------------------------------------------------------------------------------

    def write_config(self, cfg: Config, model_from_python: str = "") -> None:
        atomic_write_text(self.config_path, cfg.to_toml(model_from_python))

    def read_config(self) -> Config:
        return Config.from_file(self.config_path, saved=True)

    def stale_evaluations(self, steps: int) -> list[str]:
        """The names of this run's evaluation files that scored other weights than those
        after ``steps`` training steps (evaluated before a resume trained on)."""
        found = [self.eval_path, *sorted(self.path.glob(EVAL_FILES))]
        stale = []
        for path in found:
            try:
                values = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(values, dict) and values.get("trained_steps", -1) != steps:
                stale.append(path.name)
        return stale

    def write_info(self, info: dict[str, Any]) -> None:
        atomic_write_text(self.info_path, json.dumps(info, indent=2, sort_keys=True) + "\n")

    def read_info(self) -> dict[str, Any]:
        """run.json's object, or {} when it is missing, unreadable or not an object."""
        try:
            info = json.loads(self.info_path.read_text())
        except (OSError, ValueError):  # ValueError: not JSON, or not UTF-8
            return {}
        return info if isinstance(info, dict) else {}

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


def _missing_folders(path: Path) -> list[Path]:
    """The folders on ``path`` that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _move_back(aside: Path, folder: Path) -> None:
    """Move every file under ``aside`` to its place in ``folder`` (replacing a file there,
    keeping any other, as in a user's plots/), then remove ``aside``."""
    for entry in sorted(aside.rglob("*")):
        if entry.is_dir() and not entry.is_symlink():
            continue
        target = folder / entry.relative_to(aside)
        target.parent.mkdir(exist_ok=True)
        os.replace(entry, target)
    shutil.rmtree(aside)


def _pid_in(fd: int) -> str:
    """`` (pid N)`` from a lock file, or nothing when its holder has not written it yet."""
    with contextlib.suppress(OSError, ValueError):
        return f" (pid {int(os.pread(fd, 32, 0).decode())})"
    return ""


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _release(key: str) -> None:
    held = _held.pop(key, None)
    if held is None:
        return
    fd, lock = held
    with contextlib.suppress(OSError):  # removed while still locked, so no one locks a ghost
        os.unlink(lock)
    os.close(fd)


@atexit.register
def _release_all() -> None:
    for key in list(_held):
        _release(key)


def _number(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
