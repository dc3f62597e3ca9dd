"""Settings refused before any work, each naming the problem and the fix: flags that the chosen
model and parts would not read, part names written with options, data files that are not .npz."""

import pytest

from pyro_vae.app.cli import main
from pyro_vae.app.config import Config
from pyro_vae.app.registry import part_registry
from pyro_vae.app.unused import unused_reason
from pyro_vae.errors import ConfigError


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--latent-hidden", "5"], "only stacked layers read it"),
     (["--latent-activation", "tanh"], "only stacked layers read it"),
     (["--prior-components", "3"], "only the prior mog or vamp reads it"),
     (["--prior-df", "5"], "only the prior student-t reads it"),
     (["--likelihood-scale", "fixed"], "only the likelihood gaussian or laplace reads it"),
     (["--guide-flow-depth", "3"], "only the guide iaf reads it"),
     (["--labels", "100"], "only the model m2 reads it"),
     (["--num-classes", "10"], "only the model cvae or m2 reads it")],
)  # fmt: skip
def test_a_flag_nothing_reads_is_refused_before_the_run_folder(flags, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *flags, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{flags[0]} changes nothing here: {message}" in err and f"drop {flags[0]}" in err
    assert not out.exists()


def test_every_part_reads_what_its_listing_says():
    for key in ("model", "prior", "likelihood", "guide", "network"):
        for name, spec in part_registry(key).items():
            latent = [100, 50] if key == "model" and name == "vae" else 10
            cfg = Config(**{key: name}, latent_dim=latent)
            assert [o for o in spec.options if unused_reason(cfg, o)] == [], (key, name)


def test_a_part_given_by_import_path_may_read_anything():
    assert unused_reason(Config(prior="mypkg.priors:Mine"), "prior_components") is None
    assert unused_reason(Config(model="mypkg.models:make"), "latent_hidden") is None


def test_compare_refuses_a_flag_only_when_no_cell_reads_it(tmp_path, capsys):
    out = str(tmp_path / "cmp")
    base = ["compare", "--print-commands", "--out", out]
    assert main([*base, "--priors", "standard-normal", "mog", "--prior-components", "3"]) == 0
    assert main([*base, "--vary", "latent_dim=150,[100,50]", "--latent-hidden", "50"]) == 0
    capsys.readouterr()
    assert main([*base, "--priors", "standard-normal", "laplace", "--prior-df", "5"]) == 2
    assert "--prior-df changes nothing here" in capsys.readouterr().err
    assert main([*base, "--vary", "prior_components=3,5"]) == 2
    assert "--prior-components changes nothing here" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("key", "value", "fix"),
    [("prior", "vamp:components=5", "write prior = 'vamp' and set its options with "
      "--prior-components"),
     ("likelihood", "gaussian:scale=0.1", "--likelihood-scale, --likelihood-scale-value"),
     ("prior", "standard-normal:df=3", "(it has no options of its own)")],
)  # fmt: skip
def test_a_built_in_name_with_options_after_a_colon_names_its_flags(key, value, fix):
    with pytest.raises(ConfigError, match="takes no options after ':'") as raised:
        Config(**{key: value})
    assert fix in str(raised.value)


@pytest.mark.parametrize("name", ["table.csv", "images.npy", "{existing}"])
def test_a_data_file_that_is_not_npz_says_how_to_make_one(name, tmp_path):
    name = name.format(existing=tmp_path)
    with pytest.raises(ConfigError, match="is not an .npz file; .*numpy.savez"):
        Config(dataset=name)
    for typo in ("mnsit", ""):
        with pytest.raises(ConfigError, match=f"unknown name '{typo}'; valid choices"):
            Config(dataset=typo)
