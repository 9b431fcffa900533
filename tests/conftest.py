"""Shared test set-up. torch is imported before any Qt module (pytorch#11326)."""

import os

import pytest
import torch  # import order matters: before Qt

os.environ.setdefault("NAPARI_CONSIGN_DEVICE", "cpu")


@pytest.fixture
def one_torch_thread():
    """One torch thread for tiny tensors: fastest on a shared 2-core machine, and stable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread_per_session():
    """Every test runs on one torch thread: the tests' tensors are small, and two threads
    spinning against other processes on a shared 2-core machine cost several times the work.
    Code that sets its own thread count (the sampler's ``num_threads``) still does."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
