"""Shared test set-up. torch is imported before any Qt module (pytorch#11326)."""

import os

import torch  # noqa: F401  (import order matters: before Qt)

os.environ.setdefault("NAPARI_CONSIGN_DEVICE", "cpu")
