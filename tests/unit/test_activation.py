"""``--activation``: the units of the networks next to x, in every built-in family, stored
with the run so that loading it rebuilds the same function; unknown names are refused."""

import pytest
import torch
from torch import nn

from pyro_vae import mlp_vae
from pyro_vae.app.build import build_model
from pyro_vae.app.config import Config
from pyro_vae.app.load import load_run
from pyro_vae.app.train import train
from pyro_vae.errors import ConfigError
from pyro_vae.families import mlp_cvae, mlp_m2, mlp_stacked_vae
from pyro_vae.networks import ACTIVATIONS, activation_unit

UNITS = tuple(ACTIVATIONS.values())


def x_side_modules(model: nn.Module) -> list[nn.Module]:
    """The modules of the networks between x and the (bottom) latent layer."""
    parts = [model.encoder, model.decoder]
    if hasattr(model, "classifier"):
        parts.append(model.classifier)
    return [m for part in parts for m in part.modules()]


def units_of(modules: list[nn.Module]) -> set[type]:
    return {type(m) for m in modules if isinstance(m, UNITS)}


FAMILIES = [
    dict(model="vae"),
    dict(model="vae", network="conv"),
    dict(model="cvae"),
    dict(model="cvae", conditional_prior=True),
    dict(model="m2"),
    dict(model="m2", network="conv"),
    dict(model="vae", latent_dim=[6, 3], latent_hidden=[8]),
]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: "-".join(map(str, f.values())))
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_family_builds_its_x_side_networks_of_the_chosen_units(family, name):
    cfg = Config(**{"latent_dim": 4, "hidden": [16, 8], **family, "activation": name})
    model = build_model(cfg, (1, 28, 28), num_classes=10)
    assert units_of(x_side_modules(model)) == {ACTIVATIONS[name]}
    x = torch.rand(3, 1, 28, 28)
    if cfg.model == "m2":  # its encoder applies the units itself, after adding the label
        assert type(model.encoder.activation) is ACTIVATIONS[name]
        assert model.encoder(x, torch.tensor([0, 1, 2])).batch_shape == (3,)
    elif cfg.model == "vae":
        assert model.encoder(x).batch_shape == (3,)


def test_the_layers_between_stochastic_layers_keep_their_own_units():
    cfg = Config(latent_dim=[6, 3], hidden=[16], latent_hidden=[8], activation="tanh")
    model = build_model(cfg, (1, 28, 28))
    between = [m for layer in [*model.guide_layers, *model.prior_layers] for m in layer.modules()]
    assert units_of(between) == {nn.ReLU}  # --latent-activation's default, not --activation
    assert units_of(x_side_modules(model)) == {nn.Tanh}


def test_a_run_trained_with_tanh_reloads_to_the_same_function(tiny_npz, tmp_path):
    cfg = Config(dataset=str(tiny_npz), epochs=1, batch_size=100, hidden=[16], latent_dim=2,
                 activation="tanh", device="cpu", out=str(tmp_path / "run"))  # fmt: skip
    trained = train(cfg, progress=False, log=lambda _: None).model
    assert Config.from_file(tmp_path / "run" / "config.toml").activation == "tanh"
    loaded = load_run(tmp_path / "run").model
    z = torch.randn(5, 2)
    assert torch.equal(loaded.decoder(z), trained.decoder(z))
    relu = build_model(cfg.replace(activation="relu"), (1, 28, 28))
    relu.load_state_dict(trained.state_dict())  # the same weights under other units
    assert not torch.allclose(relu.decoder(z), trained.decoder(z))


def test_a_config_without_the_key_keeps_relu():
    text = Config(hidden=[16]).to_toml().replace('activation = "relu"\n', "", 1)
    assert "\nactivation" not in text
    assert Config.from_toml_text(text).activation == "relu"


def test_an_unknown_name_is_refused_with_the_valid_choices():
    with pytest.raises(ConfigError, match="activation: unknown name 'gelu'; valid choices: relu"):
        Config(activation="gelu")
    with pytest.raises(ConfigError, match="activation: unknown name 'gelu'; valid choices: relu"):
        activation_unit("gelu")


FACTORIES = {
    "mlp_vae": lambda act: mlp_vae((1, 28, 28), 4, [16, 8], activation=act),
    "mlp_cvae": lambda act: mlp_cvae((1, 28, 28), 10, 4, [16, 8], activation=act),
    "mlp_m2": lambda act: mlp_m2((1, 28, 28), 10, 4, [16, 8], activation=act),
    "mlp_stacked_vae": lambda act: mlp_stacked_vae((1, 28, 28), (6, 3), [16], [8], activation=act),
}


@pytest.mark.parametrize("factory", sorted(FACTORIES))
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_the_python_factories_take_the_units_too(factory, name):
    model = FACTORIES[factory](name)
    assert units_of(x_side_modules(model)) == {ACTIVATIONS[name]}
    if factory == "mlp_m2":
        assert type(model.encoder.activation) is ACTIVATIONS[name]


@pytest.mark.parametrize("factory", sorted(FACTORIES))
def test_the_python_factories_refuse_an_unknown_name(factory):
    with pytest.raises(ConfigError, match="unknown name 'gelu'"):
        FACTORIES[factory]("gelu")
