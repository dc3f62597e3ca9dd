"""Atomic file writes: a crash leaves either the old file or the new one, never half of either.

Write to a temporary file in the same folder (``.NAME.RANDOM.tmp``, created with the
usual permissions: 0666 less the umask), flush and fsync it, rename it over the
target, then fsync the folder so the rename itself is durable. A process killed
mid-write leaves its temporary file behind; :func:`stale_temp_files` finds them.
:func:`check_output_path` checks a user's output path before any work is done.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.csv"
    >>> atomic_write_text(path, "epoch,loss\\n1,0.5\\n")
    >>> path.read_text()
    'epoch,loss\\n1,0.5\\n'
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_torch_save",
    "atomic_writer",
    "check_output_path",
    "stale_temp_files",
]


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces ``path`` only if the block finishes without error."""
    path = Path(path)
    fd, tmp_name = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def check_output_path(path: str | Path, flag: str, suffix: str, *, replace: bool) -> Path:
    """``path`` if a new ``FILE{suffix}`` can be written there, else ConfigError naming ``flag``:
    the suffix is right (any case), the folder exists and may be written to, the file is
    new (or ``replace``) and never a file of a training run's record (:func:`run_record`).

    Example:
        >>> check_output_path("figure.jpg", "--figure", ".png", replace=False)
        Traceback (most recent call last):
        ...
        pyro_vae.errors.ConfigError: --figure figure.jpg: name the output file FILE.png
    """
    from .run_folder import refuse_run_record  # which imports this module

    path = Path(path)
    if path.suffix.lower() != suffix:
        raise ConfigError(f"{flag} {path}: name the output file FILE{suffix}")
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; name a file FILE{suffix}")
    refuse_run_record(path, flag)
    if path.exists() and not replace:
        raise ConfigError(f"{flag} {path} exists; choose another path or remove it first")
    folder = path.parent
    if not folder.is_dir():
        why = "is a file, not a folder" if folder.exists() else "does not exist; create it first"
        raise ConfigError(f"{flag} {path}: folder {folder} {why}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{flag} {path}: folder {folder} is not writable; choose another path or make the "
            "folder writable"
        )
    return path


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new temporary file next to ``path``; unlike mkstemp's 0600, the umask sets its mode."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), tmp
        except FileExistsError:
            continue


def stale_temp_files(path: str | Path) -> list[Path]:
    """Temporary files that writes of ``path`` left behind (call only when none is running).

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> (folder / ".checkpoint.pt.1a2b3c4d.tmp").write_bytes(b"half")
        4
        >>> [p.name for p in stale_temp_files(folder / "checkpoint.pt")]
        ['.checkpoint.pt.1a2b3c4d.tmp']
    """
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> None:
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(
    obj: Any, path: str | Path, save: Callable[[Any, IO[bytes]], None] | None = None
) -> None:
    """``torch.save`` (or ``save``) into memory, then :func:`atomic_write_bytes`.

    Serializing first means a full disk fails as Python's own ``OSError`` (ENOSPC,
    EFBIG) from the write, not as an error from inside torch's zip writer.
    """
    if save is None:
        import torch  # here, so that importing this module stays light (the CLI's error path)

        save = torch.save
    buffer = io.BytesIO()
    save(obj, buffer)
    atomic_write_bytes(path, buffer.getbuffer())
