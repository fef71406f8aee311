"""Property-based tests of settings validation: bad input gives ConfigError naming the field, nothing else.

Valid settings round-trip through the TOML export and ``gan-workbench train --config``.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from workbench.cli import load_config_file
from workbench.core.config import (CONSTRAINTS, D_NORMS, DEVICES, FIELD_NAMES, LOSSES, OPTIMIZERS, PRESETS,
                                   TrainConfig, build_config, validate_field)
from workbench.core.export import config_to_toml
from workbench.core.validation import ConfigError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

FLOAT_SAFE_INTEGERS = st.integers(min_value=-(10**400), max_value=10**400)
SCALARS = st.one_of(
    st.none(), st.booleans(), FLOAT_SAFE_INTEGERS, st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.binary(max_size=6),
)
ANY_VALUE = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.tuples(SCALARS, SCALARS),
    st.dictionaries(st.text(max_size=4), SCALARS, max_size=2),
    st.sampled_from(["ring8", "mnist:/data", "folder:", "adam", "sn", "0", "1e-4", "0.5 0.9", "-3", "64"]),
)


def _check_error(error: ConfigError, names) -> None:
    assert error.field in names, (error.field, names)
    assert str(error).startswith(f"{error.field}: ")
    assert len(error.detail) > 10


@SETTINGS
@given(name=st.sampled_from(FIELD_NAMES), value=ANY_VALUE)
def test_validate_field_any_value(name, value):
    try:
        result = validate_field(name, value)
    except ConfigError as error:
        _check_error(error, {name})
        return
    # An accepted value is already in its final form.
    assert validate_field(name, result) == result


@SETTINGS
@given(name=st.text(max_size=15).filter(lambda text: text not in FIELD_NAMES), value=ANY_VALUE)
def test_validate_field_unknown_name(name, value):
    with pytest.raises(ConfigError) as error:
        validate_field(name, value)
    assert error.value.field == name
    assert "unknown setting" in str(error.value)


@SETTINGS
@given(values=st.dictionaries(st.sampled_from(FIELD_NAMES), ANY_VALUE, max_size=6))
def test_build_config_any_values(values):
    try:
        config = build_config(values)
    except ConfigError as error:
        # check_consistency names d_norm or clip_value even when only the constraint was given.
        _check_error(error, set(values) | {"d_norm", "clip_value"})
        return
    assert isinstance(config, TrainConfig)


TOML_VALUES = st.recursive(
    st.one_of(st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
              st.floats(allow_nan=True), st.text(max_size=10).filter(lambda text: "~" not in text)),
    lambda children: st.lists(children, max_size=3), max_leaves=4)


@SETTINGS
@given(values=st.dictionaries(st.sampled_from([*FIELD_NAMES, "stepz", "lr-g", "train"]), TOML_VALUES, max_size=5),
       table=st.booleans())
def test_toml_file_any_values(tmp_path, values, table):
    import tomli_w

    path = tmp_path / "settings.toml"
    path.write_text(tomli_w.dumps({"train": values} if table else values))
    loaded = load_config_file(path)
    try:
        build_config(loaded)
    except ConfigError as error:
        _check_error(error, set(loaded) | {"d_norm", "clip_value"})


@SETTINGS
@given(text=st.text(max_size=60))
def test_toml_file_any_text(tmp_path, text):
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    try:
        loaded = load_config_file(path)
        build_config(loaded)
    except ConfigError as error:
        assert error.field == "config" or error.field in loaded or error.field in ("d_norm", "clip_value")


PATH_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " _-./é", min_size=1, max_size=20)
VALID_DATA = st.one_of(
    st.sampled_from(["ring8", "grid25", "spiral"]),
    st.builds(lambda kind, path: f"{kind}:/{path}", st.sampled_from(["mnist", "fashion-mnist", "cifar10", "folder"]),
              PATH_TEXT),
)
POSITIVE_FLOAT = st.floats(min_value=1e-12, max_value=1e6, allow_nan=False)
VALID_VALUES = st.fixed_dictionaries({}, optional={
    "data": VALID_DATA,
    "preset": st.sampled_from(["custom", *PRESETS]),
    "loss": st.sampled_from(LOSSES),
    "constraint": st.sampled_from(CONSTRAINTS),
    "steps": st.integers(1, 10**9),
    "batch_size": st.integers(1, 65536),
    "n_critic": st.integers(1, 100),
    "optimizer": st.sampled_from(OPTIMIZERS),
    "lr_g": st.floats(min_value=1e-12, max_value=1.0),
    "lr_d": st.floats(min_value=1e-12, max_value=1.0),
    "betas": st.tuples(st.floats(0.0, 0.999999), st.floats(0.0, 0.999999)),
    "clip_value": st.floats(min_value=1e-9, max_value=10.0),
    "gp_weight": POSITIVE_FLOAT,
    "z_dim": st.integers(0, 4096),
    "width": st.integers(0, 4096),
    "d_norm": st.sampled_from(D_NORMS),
    "image_size": st.sampled_from([0, 28, 32, 64]),
    "channels": st.sampled_from([0, 1, 3]),
    "seed": st.integers(0, 2**63 - 1),
    "device": st.sampled_from(DEVICES),
    "sample_every": st.integers(1, 10**9),
    "checkpoint_every": st.integers(1, 10**9),
    "log_every": st.integers(1, 10**9),
    "num_samples": st.integers(1, 1024),
})


@SETTINGS
@given(values=VALID_VALUES)
def test_valid_config_toml_round_trip(tmp_path, values):
    try:
        config = build_config(values)
    except ConfigError as error:
        # The one invalid pair: the gradient penalty (set directly or by a preset) with BatchNorm.
        assert error.field == "d_norm"
        assert values.get("d_norm") == "batch"
        reject()
    path = tmp_path / "settings.toml"
    path.write_text(config_to_toml(config), encoding="utf-8")
    assert build_config(load_config_file(path)) == config


# ----- inputs that once raised something other than ConfigError ----------------------

def test_huge_int_learning_rate():
    with pytest.raises(ConfigError):
        validate_field("lr_g", 10**400)


def test_unknown_home_in_data_path():
    with pytest.raises(ConfigError):
        validate_field("data", "mnist:~no_such_user_here/data")


def test_config_file_not_utf8(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_bytes(b"steps = 5\nlr_g = '\xff'\n")
    with pytest.raises(ConfigError):
        load_config_file(path)


def test_config_file_is_folder(tmp_path):
    with pytest.raises(ConfigError):
        load_config_file(tmp_path)
