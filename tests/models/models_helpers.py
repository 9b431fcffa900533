"""Helpers shared by the models tests (a uniquely named module, importable from test files)."""

from __future__ import annotations

import torch

from napari_consign.models.unet import UNet


def make_tiny_unet(seed: int = 0, dropout: float = 0.3, norm: str = "batch") -> UNet:
    """A 3-level UNet with 4 base channels and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    net = UNet(in_channels=1, out_channels=2, base_channels=4, levels=3, dropout=dropout, norm=norm)
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.rand(4, 1, 32, 32))
    return net.eval()
