"""Fixtures for the models tests: tiny seeded UNets (fast on 2 CPU cores)."""

from __future__ import annotations

import pytest
from models_helpers import make_tiny_unet

from napari_consign.models.unet import UNet


@pytest.fixture
def tiny_unet() -> UNet:
    return make_tiny_unet()


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every models test runs on one torch thread (see tests/conftest.py)."""
