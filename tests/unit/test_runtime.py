"""CPU threads beyond the machine's, and the version line."""

import pyro
import pytest
import torch

import pyro_vae
from pyro_vae.app.cli import main
from pyro_vae.app.runtime import apply_threads, usable_cpus


def test_more_threads_than_cpus_are_cut_to_the_cpus_with_a_note():
    before = torch.get_num_threads()
    try:
        note = apply_threads(usable_cpus() + 998)
        assert torch.get_num_threads() == usable_cpus()
        assert f"threads {usable_cpus() + 998} is more than the {usable_cpus()} CPUs" in note
        assert apply_threads(1) == "" and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_version_names_pyro_vae_and_the_libraries_it_runs_on(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    shown = capsys.readouterr().out
    assert pyro_vae.__version__ in shown and pyro.__version__ in shown
    assert torch.__version__ in shown
