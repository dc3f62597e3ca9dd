import gzip
import io
import tracemalloc
import zipfile

import numpy as np
import pytest
import torch

from pyro_vae.app.registry import load_dataset
from pyro_vae.data import prepare_data
from pyro_vae.datasets import DEBIAN_FASHION_MNIST, Dataset, load_npz, load_npz_points, read_idx
from pyro_vae.errors import DataError


def test_mnist5k_is_a_stratified_reproducible_split(mnist5k):
    assert mnist5k.x_train.shape == (4500, 1, 28, 28) and mnist5k.x_test.shape == (500, 1, 28, 28)
    assert mnist5k.x_train.dtype == torch.uint8 and int(mnist5k.x_train.max()) == 255
    assert torch.bincount(mnist5k.y_test).tolist() == [50] * 10
    assert torch.bincount(mnist5k.y_train).tolist() == [450] * 10
    again = load_dataset("mnist5k")
    assert torch.equal(again.x_test, mnist5k.x_test)
    train_rows = {bytes(row) for row in mnist5k.x_train.flatten(1).numpy()}
    assert not any(bytes(row) in train_rows for row in mnist5k.x_test.flatten(1).numpy())


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _torchvision_layout(root, mnist5k, folder="MNIST"):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "train-images-idx3-ubyte.gz", mnist5k.x_train[:200, 0].numpy())
    _write_idx(raw / "train-labels-idx1-ubyte.gz", mnist5k.y_train[:200].numpy())
    _write_idx(raw / "t10k-images-idx3-ubyte.gz", mnist5k.x_test[:50, 0].numpy())
    _write_idx(raw / "t10k-labels-idx1-ubyte.gz", mnist5k.y_test[:50].numpy())
    return raw


def test_mnist_reads_an_existing_torchvision_folder(tmp_path, mnist5k):
    _torchvision_layout(tmp_path, mnist5k)
    ds = load_dataset("mnist", tmp_path)
    assert ds.name == "mnist" and not ds.note
    assert torch.equal(ds.x_train, mnist5k.x_train[:200]) and torch.equal(
        ds.y_test, mnist5k.y_test[:50]
    )


def test_offline_mnist_falls_back_to_mnist5k_after_one_short_probe(tmp_path, monkeypatch):
    import torchvision.datasets

    import pyro_vae.datasets as datasets

    probes = []
    real_probe = datasets.network_reachable

    def probe(host, *args, **kwargs):
        probes.append(host)
        return real_probe(host, *args, **kwargs)  # bounded by NETWORK_PROBE_SECONDS

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted although the probe found no network")

    monkeypatch.setattr(datasets, "network_reachable", probe)
    monkeypatch.setattr(torchvision.datasets.MNIST, "__init__", no_download)
    ds = load_dataset("mnist", tmp_path / "empty")
    assert len(probes) == 1 and datasets.NETWORK_PROBE_SECONDS <= 5
    assert ds.name == "mnist5k" and "training on mnist5k" in ds.note and "mnist" in ds.note


def test_offline_fashion_mnist_without_files_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr("pyro_vae.datasets.DEBIAN_FASHION_MNIST", tmp_path / "none")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", tmp_path)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_found_in_debian_location_without_data_dir():
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)


def test_truncated_idx_file_is_named(tmp_path, mnist5k):
    raw = _torchvision_layout(tmp_path, mnist5k)
    path = raw / "t10k-images-idx3-ubyte.gz"
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:-100]))
    with pytest.raises(DataError, match="t10k-images.*truncated"):
        read_idx(path)


def test_npz_with_only_x_gets_a_seeded_test_split(tmp_path):
    x = np.random.default_rng(0).random((50, 6)).astype(np.float32)
    np.savez(tmp_path / "flat.npz", x=x)
    ds = load_npz(tmp_path / "flat.npz")
    assert ds.x_train.shape == (45, 6) and ds.x_test.shape == (5, 6) and ds.y_train is None
    again = load_npz(tmp_path / "flat.npz")
    assert torch.equal(ds.x_test, again.x_test)
    assert sorted(torch.cat([ds.x_train, ds.x_test])[:, 0].tolist()) == sorted(x[:, 0].tolist())


def test_npz_images_gain_a_channel_axis(tiny_npz):
    ds = load_dataset(str(tiny_npz))
    assert ds.data_shape == (1, 28, 28) and ds.is_8bit and len(ds.y_train) == 300


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"images": np.zeros((5, 4))}, r"no array named 'x' \(found: images\)"),
        ({"x": np.full((5, 4), np.inf)}, r"20 infinite values"),
        ({"x": np.full((5, 4), 1e39)}, r"20 infinite values \(as float32\)"),
        ({"x": np.zeros((5, 4), np.uint8), "x_test": np.zeros((2, 4))}, r"x holds 8-bit levels"),
        ({"x": np.zeros((0, 4))}, r"is empty"),
        ({"x": np.zeros(5)}, r"shape \(5,\); expected \[N, D\]"),
        ({"x": np.zeros((5, 4)), "y": np.zeros(4, dtype=int)}, r"4 labels for 5 images"),
        ({"x": np.array([["a"]])}, r"must be real numbers"),
    ],
)
def test_bad_npz_contents_name_file_and_problem(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message) as info:
        load_npz(path)
    assert "bad.npz" in str(info.value)


def test_missing_and_corrupt_npz_files(tmp_path):
    with pytest.raises(DataError, match="nope.npz: file not found"):
        load_npz(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip archive")
    with pytest.raises(DataError, match="junk.npz: not a .npz archive"):
        load_npz(tmp_path / "junk.npz")


def test_pickled_object_arrays_are_not_loaded(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([object()] * 3, dtype=object))
    with pytest.raises(DataError, match="obj.npz: array 'x' holds Python objects.*for safety"):
        load_npz(tmp_path / "obj.npz")


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _npy_header(shape, descr="|u1"):
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


CONTAINERS = {
    "npy-renamed": (lambda p: p.write_bytes(_npy(np.zeros((5, 4)))), r"a single \.npy array"),
    "text": (lambda p: p.write_text("1,2,3\n4,5,6\n"), r"not a \.npz archive \(not a zip"),
    "member-not-npy": (lambda p: _zip(p, {"x": b"pixels"}), r"member 'x' is not a NumPy array"),
    "member-garbage": (lambda p: _zip(p, {"x.npy": b"pixels"}), r"'x.npy' is not a readable"),
    "header-2^40": (
        lambda p: _zip(p, {"x.npy": _npy_header((2**40, 784))}),
        r"declares shape \(1099511627776, 784\) of uint8 \(862,[0-9.]* GB\), more than the "
        r"[0-9.,]+ GB of memory available",
    ),
    "truncated-member": (
        lambda p: _zip(p, {"x.npy": _npy(np.zeros((50, 4)))[:-40]}),
        r"\(1600 bytes\) but holds 1560 bytes; the file is truncated",
    ),
    "negative-shape": (
        lambda p: _zip(p, {"x.npy": _npy_header((-1, -1)) + b"\0"}),
        r"declares shape \(-1, -1\), with a negative size",
    ),
    "directory": (lambda p: p.mkdir(), r"cannot be read \(Is a directory\)"),
}


@pytest.mark.parametrize("kind", list(CONTAINERS))
def test_npz_container_faults_are_one_data_error_without_pickle_advice(tmp_path, kind):
    write, message = CONTAINERS[kind]
    path = tmp_path / "data.npz"
    write(path)
    tracemalloc.start()  # numpy reports its allocations here
    try:
        with pytest.raises(DataError, match=message) as info:
            load_npz(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20, f"refused before allocating anything (peak {peak} bytes)"
    text = str(info.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    assert "pickle" not in text, "numpy's advice to allow pickles is never passed on"


def test_an_overlong_dataset_path_is_a_data_error(tmp_path):
    path = tmp_path / ("d" * 300 + ".npz")
    with pytest.raises(DataError, match=r"cannot be read \(File name too long\); check the path"):
        load_npz(path)


def test_unbounded_floats_and_integers_load_as_values(tmp_path):
    """The loader checks the container; which values fit is the likelihood's question."""
    standardized = np.random.default_rng(0).normal(size=(20, 6)) * 3
    counts = np.arange(20 * 6).reshape(20, 6) * 100
    np.savez(tmp_path / "table.npz", x=standardized, x_test=counts[:4].astype(np.float32))
    np.savez(tmp_path / "counts.npz", x=counts)
    table, count_data = load_npz(tmp_path / "table.npz"), load_npz(tmp_path / "counts.npz")
    assert table.x_train.dtype == torch.float32 and not table.is_8bit
    assert torch.allclose(table.x_train, torch.from_numpy(standardized).float())
    assert count_data.x_train.dtype == torch.float32 and float(count_data.x_train.max()) > 255


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.uint16, bool])
def test_only_uint8_is_8_bit_levels_other_integers_keep_their_values(tmp_path, dtype):
    """Binary 0/1 saved as int8 used to become uint8 levels and then 0 and 1/255."""
    binary = (np.random.default_rng(0).random((20, 6)) < 0.3).astype(dtype)
    np.savez(tmp_path / "binary.npz", x=binary, x_test=binary[:4])
    data = load_npz(tmp_path / "binary.npz")
    assert not data.is_8bit
    assert torch.equal(data.x_train, torch.from_numpy(binary.astype(np.float32)))
    levels = binary.astype(np.uint8) * 200
    np.savez(tmp_path / "levels.npz", x=levels, x_test=levels[:4])
    assert load_npz(tmp_path / "levels.npz").is_8bit


def test_prepare_data_judges_the_range_by_the_likelihood(tmp_path):
    np.savez(tmp_path / "table.npz", x=np.linspace(-4, 4, 20 * 6).reshape(20, 6))
    dataset = load_npz(tmp_path / "table.npz")
    data = prepare_data(dataset, "real", "gaussian", "auto", seed=0)
    assert float(data.train.min()) < -3 and float(data.train.max()) > 3
    with pytest.raises(DataError, match=r"'continuous-bernoulli' needs values in \[0, 1\] but"):
        prepare_data(dataset, "unit", "continuous-bernoulli", "auto", seed=0)


def test_images_saved_channels_last_get_a_note_with_the_transpose(tmp_path):
    rgb = np.zeros((10, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "hwc.npz", x=rgb, x_test=rgb[:2])
    assert "save x.transpose(0, 3, 1, 2)" in load_npz(tmp_path / "hwc.npz").note
    np.savez(
        tmp_path / "chw.npz", x=rgb.transpose(0, 3, 1, 2), x_test=rgb[:2].transpose(0, 3, 1, 2)
    )
    assert load_npz(tmp_path / "chw.npz").note == ""


def test_from_tensors_keeps_integer_counts_and_booleans_as_their_values():
    counts = torch.randint(0, 40, (8, 3))
    as_ints = Dataset.from_tensors(counts, counts[:2])
    as_floats = Dataset.from_tensors(counts.float(), counts[:2].float())
    assert torch.equal(as_ints.x_train, as_floats.x_train)  # not levels / 255
    binary = Dataset.from_tensors(counts > 20, counts[:2] > 20)
    assert torch.equal(binary.x_train, (counts > 20).float())
    with pytest.raises(DataError, match="must hold real numbers"):
        Dataset.from_tensors(counts.to(torch.complex64), counts[:2].to(torch.complex64))


def test_numpy_arrays_make_the_same_dataset_as_tensors():
    """numpy arrays failed with AttributeError: 'numpy.ndarray' object has no attribute ..."""
    rng = np.random.default_rng(0)
    x, x_test = rng.random((6, 3)), rng.random((2, 3))  # float64, numpy's default
    y, y_test = np.array([0, 1, 2, -1, 1, 0]), np.array([2, 0])
    mask, mask_test = x > 0.2, x_test > 0.2
    given = Dataset.from_tensors(x, x_test, y, y_test, mask_train=mask, mask_test=mask_test)
    as_tensors = [torch.from_numpy(a) for a in (x, x_test, y, y_test, mask, mask_test)]
    expected = Dataset.from_tensors(
        *as_tensors[:4], mask_train=as_tensors[4], mask_test=as_tensors[5]
    )
    for field in ("x_train", "x_test", "y_train", "y_test", "mask_train", "mask_test"):
        assert torch.equal(getattr(given, field), getattr(expected, field)), field
    assert given.x_train.dtype == torch.float32 and given.y_train.dtype == torch.int64


def test_string_labels_are_refused_naming_how_to_index_them():
    x = torch.rand(3, 2)
    with pytest.raises(DataError, match=r"y_train must hold numbers, not <U3.*np.unique"):
        Dataset.from_tensors(x, x, ["cat", "dog", "cat"], ["dog", "dog", "cat"])


def test_a_vector_of_numbers_is_refused_naming_the_column_it_needs():
    """x of shape [N] made datapoints of shape (), which the encoder failed on."""
    with pytest.raises(DataError, match=r"x_train has shape \(5,\).*x_train\[:, None\]"):
        Dataset.from_tensors(torch.randn(5), torch.randn(2))
    assert Dataset.from_tensors(torch.randn(5)[:, None], torch.randn(2, 1)).data_shape == (1,)


def test_uint8_zeros_and_ones_are_binary_values_not_levels_and_the_load_says_so(tmp_path):
    """Found by a CLI probe: a binary table saved as uint8 (as masks often are) was divided
    by 255, so a default Bernoulli VAE trained on all but black data (test ELBO -1.4 nats
    against -11.4 for the same table saved as int64) without a word."""
    binary = (np.random.default_rng(0).random((30, 6)) < 0.4).astype(np.uint8)
    np.savez(tmp_path / "mask.npz", x=binary)
    np.savez(tmp_path / "mask_ints.npz", x=binary.astype(np.int64))
    as_uint8, as_ints = load_npz(tmp_path / "mask.npz"), load_npz(tmp_path / "mask_ints.npz")
    assert not as_uint8.is_8bit and torch.equal(as_uint8.x_train, as_ints.x_train)
    assert "taken as the binary values 0 and 1" in as_uint8.note
    points, _, _ = load_npz_points(tmp_path / "mask.npz")  # impute and evaluate --data agree
    assert torch.equal(points, torch.from_numpy(binary.astype(np.float32)))
    zero_test = np.zeros((4, 6), np.uint8)  # a test split of zeros reads as the train split
    np.savez(tmp_path / "split.npz", x=binary, x_test=zero_test)
    assert load_npz(tmp_path / "split.npz").x_test.dtype == torch.float32
    dark = (binary * 16).astype(np.uint8)  # levels that stop at 16: read as levels, with a note
    np.savez(tmp_path / "dark.npz", x=dark)
    loaded = load_npz(tmp_path / "dark.npz")
    assert loaded.is_8bit and "largest value is 16" in loaded.note and "int64" in loaded.note


def test_labels_saved_as_whole_floats_load_and_other_labels_are_refused_naming_the_fix(tmp_path):
    """Found by a CLI probe: iris with its labels as 0.0/1.0/2.0 (or as species names) could
    not train even an unconditional VAE, and the refusal named no way out."""
    x = np.random.default_rng(0).normal(size=(6, 3))
    np.savez(tmp_path / "floats.npz", x=x, y=np.array([0.0, 1, 2, 0, 1, 2]))
    assert load_npz(tmp_path / "floats.npz", whole=True).y_train.tolist() == [0, 1, 2, 0, 1, 2]
    for bad, found in [
        (np.array(["setosa", "virginica"] * 3), "<U9"),
        (np.array([0.5, 1, 2, 0, 1, 2]), "with fractions or NaN"),
        (np.array([np.nan, 1, 2, 0, 1, 2]), "with fractions or NaN"),
    ]:
        np.savez(tmp_path / "bad.npz", x=x, y=bad)
        with pytest.raises(DataError) as err:
            load_npz(tmp_path / "bad.npz")
        message = str(err.value)
        assert "'y' must be whole numbers" in message and found in message
        assert "np.unique(y, return_inverse=True)" in message and "leave y out" in message
        assert "\n" not in message


@pytest.mark.parametrize(
    "arrays, renamed",
    [
        ({"x_train": 4, "y_train": 4, "x_test": 2, "y_test": 2}, "x=f['x_train'], y=f['y_train']"),
        ({"X": 4, "y": 4}, "x=f['X'], y=f['y']"),
        ({"data": 4}, "x=f['data']"),
    ],
)
def test_an_npz_of_another_convention_is_refused_with_the_renaming(tmp_path, arrays, renamed):
    """Found by a CLI probe: Keras' mnist.npz layout (x_train, y_train, x_test, y_test) and
    scikit-learn's X, y were told to 'save images as x=images, y=labels', which says neither
    that x_test and y_test are read nor which of the file's arrays go where."""
    rows = {key: np.zeros((n, 3), np.float32) if key[0] in "xXd" else np.zeros(n, int)
            for key, n in arrays.items()}  # fmt: skip
    np.savez(tmp_path / "other.npz", **rows)
    with pytest.raises(DataError, match="no array named 'x'") as info:
        load_npz(tmp_path / "other.npz")
    assert renamed in str(info.value)
    if "x_test" in arrays:  # arrays already named as read keep their names
        assert "x_test=f['x_test'], y_test=f['y_test']" in str(info.value)


def test_arrays_that_are_not_read_are_named_and_a_test_label_without_test_data_refused(tmp_path):
    """Found by a CLI probe: a file's X_test, a mask saved as 'masks' and y_test beside no
    x_test were ignored without a word (the test split was carved from x, the mask never
    applied, the test labels dropped)."""
    x = np.random.default_rng(0).random((20, 3)).astype(np.float32)
    np.savez(tmp_path / "typos.npz", x=x, X_test=x[:5], masks=x > 0.1, meta=np.array("v1"))
    note = load_npz(tmp_path / "typos.npz").note
    assert "'X_test', 'masks', 'meta' are not read" in note
    assert "x_test=f['X_test']" in note and "mask=f['masks']" in note
    np.savez(tmp_path / "clean.npz", x=x, y=np.arange(20) % 2)
    assert "not read" not in load_npz(tmp_path / "clean.npz").note
    np.savez(tmp_path / "labels.npz", x=x, y=np.arange(20) % 2, y_test=np.zeros(5, int))
    with pytest.raises(DataError, match="has 'y_test' but no 'x_test'"):
        load_npz(tmp_path / "labels.npz")
