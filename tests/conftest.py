"""Shared fixtures: the real offline MNIST subset and small files cut from it.

The tests mirror the package module by module: ``tests/unit/`` test one module in
process, ``tests/integration/`` start processes or train to a run folder, and every
test there (and the few subprocess tests in ``unit/``) is marked ``integration``:
``pytest -m "not integration"`` runs the unit tests alone.

Every test runs torch on one CPU thread, and so does every process a test starts (it
inherits the environment): on a shared 2-core machine, threads waiting for busy cores
made an epoch up to 30x slower.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from pyro_vae.app.registry import load_dataset

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def mnist5k():
    return load_dataset("mnist5k")


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory, mnist5k):
    """300 real MNIST digits (uint8) with labels and a 100-image test split, as a user's .npz."""
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    pick = torch.linspace(0, len(mnist5k.x_train) - 1, 300).long()
    test = torch.linspace(0, len(mnist5k.x_test) - 1, 100).long()
    np.savez(
        path,
        x=mnist5k.x_train[pick, 0].numpy(),
        y=mnist5k.y_train[pick].numpy(),
        x_test=mnist5k.x_test[test, 0].numpy(),
        y_test=mnist5k.y_test[test].numpy(),
    )
    return path


@pytest.fixture
def binary_batch(mnist5k):
    """64 real digits binarized with a fixed seed."""
    generator = torch.Generator().manual_seed(0)
    return torch.bernoulli(mnist5k.x_test[:64].float() / 255, generator=generator)
