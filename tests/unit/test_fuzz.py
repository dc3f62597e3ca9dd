"""Random configs and random arrays: every failure is one of the project's own clear errors."""

import contextlib
import copy
import io
import math
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pyro_vae.app.checkpoint import (
    capture_rng_state,
    check_checkpoint,
    load_checkpoint,
    load_model_state,
    load_optimizer_state,
    restore_rng_state,
)
from pyro_vae.app.config import Config
from pyro_vae.app.load import load_run
from pyro_vae.app.runtime import make_adam
from pyro_vae.app.train import train
from pyro_vae.app.trainer import Position
from pyro_vae.data import SUPPORTS, prepare_data
from pyro_vae.datasets import load_npz
from pyro_vae.errors import CheckpointError, ConfigError, DataError

KEYS = [name for name, _, _ in Config.describe()] + ["epoch", "data", "training", "", "x y"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=5))
def test_config_from_random_mappings_is_valid_or_a_config_error(mapping):
    try:
        cfg = Config.from_dict(mapping)
    except ConfigError as err:
        assert str(err)
        return
    assert Config.from_toml_text(cfg.to_toml()) == cfg


@FUZZ
@given(st.text(max_size=200))
def test_config_from_random_text_is_valid_or_a_config_error(text):
    with contextlib.suppress(ConfigError):
        Config.from_toml_text(text)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(KEYS[:20]), scalars), max_size=4))
def test_config_from_random_toml_assignments(pairs):
    lines = []
    for key, value in pairs:
        if value is None:
            continue
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, float) and not math.isfinite(value):
            text = "nan" if value != value else ("inf" if value > 0 else "-inf")
        elif isinstance(value, str):
            text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        else:
            text = repr(value)
        lines.append(f"{key} = {text}")
    with contextlib.suppress(ConfigError):
        Config.from_toml_text("\n".join(lines))


arrays = hnp.arrays(
    dtype=st.sampled_from(
        [np.uint8, np.int16, np.int64, np.float16, np.float32, np.float64, np.bool_, np.complex64]
    ),
    shape=hnp.array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=5),
    elements=None,
)


@FUZZ
@given(
    x=arrays,
    y=st.none() | hnp.arrays(np.int64, hnp.array_shapes(max_dims=2, max_side=6)),
    support=st.sampled_from(list(SUPPORTS)),
    binarize=st.sampled_from(["auto", "dynamic", "static", "none"]),
)
def test_random_npz_loads_or_fails_with_a_data_error(tmp_path_factory, x, y, support, binarize):
    path = tmp_path_factory.mktemp("fuzz") / "data.npz"
    np.savez(path, x=x, **({} if y is None else {"y": y}))
    try:
        dataset = load_npz(path)
        data = prepare_data(dataset, support, "fuzzed", binarize, seed=0)
    except DataError as err:
        assert "data.npz" in str(err) or "fuzzed" in str(err) or "split" in str(err)
        return
    assert data.train.shape[0] >= 1 and data.test.shape[0] >= 1
    # NaN marks a missing entry (scored over the observed ones); nothing may be infinite
    assert not data.train.isinf().any() and not data.test.isinf().any()


@pytest.mark.parametrize("name", ["x", "x_test"])
def test_complex_images_are_refused_not_silently_cast(tmp_path, name):
    """Found by the fuzzer: complex arrays used to lose their imaginary part with a warning."""
    path = tmp_path / "data.npz"
    arrays = {"x": np.zeros((4, 2), np.float32)}
    arrays[name] = np.zeros((4, 2), np.complex64)
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=f"'{name}' has dtype complex64; images must be real"):
        load_npz(path)


# -- checkpoints: any damage to the structure is a CheckpointError, never another exception ------

DELETE = object()
tensors = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
).map(torch.from_numpy)
replacements = st.one_of(
    st.just(DELETE),
    values,
    tensors,
    st.lists(tensors | scalars, max_size=3),
    st.dictionaries(st.text(max_size=4) | st.integers(0, 3), tensors | scalars, max_size=3),
)
PLACES = [
    ("format",), ("config",), ("config", "latent_dim"), ("config", "hidden"), ("config", "prior"),
    ("data_shape",), ("data_shape", 0), ("data_shape", 2), ("model",), ("model", "<first>"),
    ("optimizer",), ("optimizer", "state"), ("optimizer", "state", 0),
    ("optimizer", "state", 0, "exp_avg"), ("optimizer", "state", 0, "step"),
    ("optimizer", "param_groups"), ("optimizer", "param_groups", 0),
    ("optimizer", "param_groups", 0, "params"), ("position",), ("position", "epoch"),
    ("position", "step"), ("position", "seconds"), ("loss_sum",), ("history",), ("history", 0),
    ("rng",), ("rng", 0), ("rng", 0, "torch"), ("rng", 0, "numpy"), ("rng", 0, "numpy", 1),
    ("rng", 0, "numpy", 2), ("rng", 0, "python"), ("rng", 0, "python", 1), ("recoveries",),
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny_npz, tmp_path_factory):
    """A real checkpoint's state and the model it was written for."""
    out = tmp_path_factory.mktemp("fuzz") / "run"
    cfg = Config(
        dataset=str(tiny_npz), epochs=1, batch_size=50, hidden=[16], latent_dim=2, out=str(out)
    )
    train(cfg, progress=False, log=lambda _: None)
    return Trained(load_checkpoint(out / "checkpoint.pt"), load_run(out).model)


class Trained(tuple):
    def __new__(cls, state, model):
        return super().__new__(cls, (state, model))

    def __repr__(self):  # hypothesis prints the arguments of a failing example
        return "<a trained checkpoint and its model>"


def _damaged(state, place, value):
    """A copy of ``state`` with the entry at ``place`` replaced (or deleted)."""
    state = copy.deepcopy(state)
    *parents, last = place
    container = state
    for key in parents:
        if not isinstance(container, (dict, list)):  # a tensor: no entry to damage inside
            return state
        try:
            container = container[key]
        except (KeyError, IndexError, TypeError):
            return state
    if not isinstance(container, (dict, list)) or not container:
        return state
    if last == "<first>":
        last = next(iter(container))
    if isinstance(container, list) and (not isinstance(last, int) or last >= len(container)):
        return state
    if value is DELETE:
        if isinstance(container, list) or last in container:
            del container[last]
    else:
        container[last] = value
    return state


def _use(state, model):
    """Everything load_run and a resume do with a checkpoint's entries."""
    state = check_checkpoint(state, "fuzz.pt")
    Config.from_dict(state["config"])
    tuple(state["data_shape"])
    load_model_state(model, state["model"], "fuzz.pt")
    load_optimizer_state(make_adam(list(model.parameters()), 1e-3), state["optimizer"], "fuzz.pt")
    Position(**state["position"])
    state["loss_sum"].clone()
    [dict(row) for row in state["history"]]
    saved = capture_rng_state()
    try:
        for entry in state["rng"]:
            restore_rng_state(entry)
    finally:
        restore_rng_state(saved)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(PLACES), replacements), min_size=1, max_size=3))
def test_a_damaged_checkpoint_is_a_checkpoint_error_or_usable(trained, damage):
    state, model = trained
    for place, value in damage:
        state = _damaged(state, place, value)
    try:
        _use(state, model)
    except CheckpointError as err:
        assert str(err).startswith("fuzz.pt: ") and "\n" not in str(err)


def test_the_undamaged_checkpoint_is_usable(trained):
    _use(*trained)


# -- .npz containers: any bytes are a Dataset or a DataError ---------------------------------


def _npy_bytes(shape, descr, fortran, data):
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": fortran, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + data


npy_members = st.builds(
    _npy_bytes,
    shape=st.lists(st.integers(-2, 2**40) | st.integers(0, 6), max_size=4).map(tuple),
    descr=st.sampled_from(
        ["|u1", "<f4", "<f8", "<i8", "|b1", "|O", "<c8", "<U3", "|V4", "<M8[s]", "bogus", "(1"]
    ),
    fortran=st.booleans(),
    data=st.binary(max_size=200),
)


def _zip_bytes(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


containers = st.one_of(
    st.binary(max_size=300),
    npy_members,
    st.dictionaries(
        st.sampled_from(["x.npy", "x", "y.npy", "x_test.npy", "y_test.npy", "other.npy"]),
        npy_members | st.binary(max_size=64),
        max_size=3,
    ).map(_zip_bytes),
)


@FUZZ
@given(containers)
def test_any_file_named_npz_loads_or_is_one_data_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("npz") / "data.npz"
    path.write_bytes(content)
    try:
        load_npz(path)
    except DataError as err:
        message = str(err)
        assert message.startswith(f"{path}: ") and "\n" not in message
        assert "allow_pickle" not in message
