"""Fixtures for the models tests: tiny seeded UNets (fast on 2 CPU cores)."""

from __future__ import annotations

import pytest
import torch
from models_helpers import make_tiny_unet

from napari_consign.models.unet import UNet


@pytest.fixture
def tiny_unet() -> UNet:
    return make_tiny_unet()


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: fastest on a shared 2-core machine, and stable results."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
