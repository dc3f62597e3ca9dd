import pytest

from pyro_vae.app.config import Config
from pyro_vae.errors import ConfigError


def test_toml_round_trip_preserves_every_field():
    cfg = Config(dataset="mnist5k", epochs=3, hidden=[256, 128], lr=2e-4, latent_dim=2, seed=7)
    assert Config.from_toml_text(cfg.to_toml()) == cfg


def test_file_round_trip(tmp_path):
    cfg = Config(out=str(tmp_path / 'run "quoted"'), data_dir="C:\\data")
    path = tmp_path / "config.toml"
    path.write_text(cfg.to_toml())
    assert Config.from_file(path) == cfg


def test_sections_and_flat_keys_both_load():
    flat = Config.from_toml_text("epochs = 2\nlatent_dim = 3\n")
    sectioned = Config.from_toml_text("[training]\nepochs = 2\n[model]\nlatent_dim = 3\n")
    assert flat == sectioned == Config(epochs=2, latent_dim=3)


def test_integer_learning_rate_is_stored_as_float():
    assert isinstance(Config.from_toml_text("lr = 1").lr, float)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) 'epoch'.*valid keys:.*epochs"):
        Config.from_toml_text("epoch = 3")


@pytest.mark.parametrize(
    "text, message",
    [
        ('epochs = "ten"', r"epochs: expected int, got str"),
        ("epochs = 2.5", r"epochs: expected int, got float"),
        ("epochs = true", r"epochs: expected int, got bool"),
        ('lr = "fast"', r"lr: expected float"),
        ("hidden = 400", r"hidden: expected list\[int\]"),
        ("hidden = []", r"hidden: expected list\[int\]"),
    ],
)
def test_wrong_types_name_the_key(text, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_toml_text(text)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": -3}, r"epochs: must be >= 1, got -3"),
        ({"latent_dim": 0}, r"latent_dim: must be >= 1"),
        ({"lr": 0.0}, r"lr: must be > 0"),
        ({"hidden": [400, 0]}, r"hidden: must be >= 1"),
        ({"batch_size": -1}, r"batch_size: must be >= 0"),
    ],
)
def test_out_of_range_values_are_rejected(changes, message):
    with pytest.raises(ConfigError, match=message):
        Config(**changes)


@pytest.mark.parametrize(
    "key, value, listed",
    [
        ("prior", "gauss", "standard-normal"),
        ("likelihood", "multinomial", "negative-binomial"),
        ("network", "resnet", "mlp"),
        ("device", "tpu", "cuda"),
        ("dataset", "cifar", "mnist5k"),
        ("binarize", "maybe", "dynamic"),
        ("objective", "wake-sleep", "elbo"),
    ],
)
def test_unknown_names_list_the_valid_choices(key, value, listed):
    with pytest.raises(ConfigError, match=rf"{key}: unknown name '{value}'.*{listed}"):
        Config(**{key: value})


def test_bad_toml_syntax_is_a_config_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("epochs = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.from_file(path)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Config.from_file(tmp_path / "nope.toml")


@pytest.mark.parametrize("key", ["model", "prior", "likelihood", "guide"])
def test_args_for_a_built_in_part_are_refused_not_dropped(key):
    with pytest.raises(ConfigError, match=rf"{key}_args: \{{'scale': 2\}} would be ignored"):
        Config(**{f"{key}_args": {"scale": 2}})
    path = "pyro_vae.count_likelihoods:PoissonLikelihood"
    assert Config(likelihood=path, likelihood_args={"rate": 1}).likelihood_args == {"rate": 1}


def test_a_key_written_below_an_args_table_in_toml_is_explained():
    text = "epochs = 1\n[prior_args]\nscale = 2\nprior = 'laplace'\n"  # prior joins the table
    with pytest.raises(ConfigError, match=r"a key written below \[prior_args\] belongs"):
        Config.from_toml_text(text)


def test_a_saved_run_with_args_for_a_built_in_part_still_loads_as_it_trained():
    saved = Config(epochs=1).to_toml() + "\n[prior_args]\nscale = 2\n"
    cfg = Config.from_toml_text(saved, saved=True)
    assert cfg.prior_args == {} and cfg == Config(epochs=1)
    with pytest.raises(ConfigError, match="prior_args"):
        Config.from_toml_text(saved)  # a new request is refused


def test_a_home_folder_tilde_is_expanded_as_a_shell_would(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = Config.from_toml_text("out = '~/runs/a'\ndata_dir = '~/data'\n")
    assert (cfg.out, cfg.data_dir) == (str(tmp_path / "runs/a"), str(tmp_path / "data"))
    assert Config(out="runs/~a").out == "runs/~a"  # only a leading ~ is the home folder


def test_a_config_saved_with_a_byte_order_mark_reads_as_without_one(tmp_path):
    """Windows editors (Notepad's "UTF-8 with BOM") start the file with U+FEFF, which TOML
    refuses as "Invalid statement" at line 1: the mark is not part of the config."""
    text = '[training]\nepochs = 3\nlr = 0.01\n\n[model]\nlatent_dim = 4\nprior = "mog"\n'
    plain, marked = tmp_path / "plain.toml", tmp_path / "marked.toml"
    plain.write_text(text, encoding="utf-8")
    marked.write_text(text, encoding="utf-8-sig")
    assert marked.read_bytes().startswith(b"\xef\xbb\xbf")
    assert Config.from_file(marked) == Config.from_file(plain) != Config()


def test_an_unknown_keyword_is_a_config_error_naming_the_closest_key():
    """Config's docstring promises ConfigError for unknown keys; Config(latentdim=10) raised
    the dataclass's TypeError, which names no valid key."""
    with pytest.raises(ConfigError, match=r"'latentdim' \(did you mean 'latent_dim'\?\)"):
        Config(latentdim=10)
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) 'zzz'; valid keys: "):
        Config(zzz=1)
    assert Config(latent_dim=3) == Config().replace(latent_dim=3)
