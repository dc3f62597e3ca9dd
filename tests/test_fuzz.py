"""Random configs and random arrays: every failure is one of the project's own clear errors."""

import contextlib
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pyro_vae.app.config import Config
from pyro_vae.data import SUPPORTS, prepare_data
from pyro_vae.datasets import load_npz
from pyro_vae.errors import ConfigError, DataError

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
    assert data.train.isfinite().all() and data.test.isfinite().all()


@pytest.mark.parametrize("name", ["x", "x_test"])
def test_complex_images_are_refused_not_silently_cast(tmp_path, name):
    """Found by the fuzzer: complex arrays used to lose their imaginary part with a warning."""
    path = tmp_path / "data.npz"
    arrays = {"x": np.zeros((4, 2), np.float32)}
    arrays[name] = np.zeros((4, 2), np.complex64)
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=f"'{name}' has dtype complex64; images must be real"):
        load_npz(path)
