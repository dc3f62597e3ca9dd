from dataclasses import fields

import pytest

from pyro_vae.app.config import Config
from pyro_vae.app.listing import describe_builtins
from pyro_vae.app.registry import DATASETS, GUIDES, LIKELIHOODS, NETWORKS, OBJECTIVES, PRIORS

REGISTRIES = [PRIORS, LIKELIHOODS, GUIDES, NETWORKS, DATASETS, OBJECTIVES]
SECTIONS = ["priors", "likelihoods", "guides", "networks", "datasets", "objectives"]


def entry(text, section, name):
    """The lines of one built-in's entry in a section: its own line and its option lines."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(section + " ("))
    start = next(i for i, line in enumerate(lines) if i > first and line.split()[:1] == [name])
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("      "):
            break
        block.append(line)
    return block


@pytest.mark.parametrize("registry, section", list(zip(REGISTRIES, SECTIONS, strict=True)))
def test_every_builtin_has_a_one_line_description(registry, section):
    text = describe_builtins()
    for name, spec in registry.items():
        head = entry(text, section, name)[0]
        assert spec.description in head and "\n" not in spec.description


@pytest.mark.parametrize("registry, section", list(zip(REGISTRIES[:4], SECTIONS[:4], strict=True)))
def test_every_option_is_listed_under_its_part_as_a_flag_with_its_default(registry, section):
    text = describe_builtins()
    defaults = {f.name: f for f in fields(Config)}
    for name, spec in registry.items():
        block = "\n".join(entry(text, section, name)[1:])
        for option in spec.options:
            assert option in defaults, f"{name} reads an unknown config field {option}"
            flag = "--" + option.replace("_", "-")
            assert flag in block and defaults[option].metadata["help"] in block


def test_part_options_are_exactly_the_model_fields_added_for_them():
    listed = {o for registry in (PRIORS, LIKELIHOODS, GUIDES) for s in registry.values()
              for o in s.options}  # fmt: skip
    assert listed == {
        "prior_components", "prior_flow", "prior_flow_depth", "prior_df",
        "likelihood_scale", "likelihood_scale_value", "standardize", "guide_flow_depth",
    }  # fmt: skip
    assert all(next(f for f in fields(Config) if f.name == o).metadata["section"] == "model"
               for o in listed)  # fmt: skip


def test_objective_options_and_dataset_options_are_listed():
    text = describe_builtins()
    assert "num_particles=1" in text
    assert "--data-dir" in text and "--binarize {auto,dynamic,static,none}" in text
