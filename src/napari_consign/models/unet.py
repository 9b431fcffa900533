"""A small 2D UNet with dropout in every block, for MC-dropout sampling.

Double 3x3 convolutions with normalisation (BatchNorm or GroupNorm) and ReLU, then ``Dropout2d``,
max-pool down, transposed convolution up, a 1x1 head with ``out_channels`` logits. The network is
TorchScript-compatible (``torch.jit.script(UNet(...))``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["UNet", "UNetConfig", "infer_config_from_state_dict"]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet`; stored as JSON next to shipped weights."""

    in_channels: int = 1
    out_channels: int = 2
    base_channels: int = 16
    levels: int = 4
    dropout: float = 0.2
    norm: str = "batch"  # "batch" or "group"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        names = ("in_channels", "out_channels", "base_channels", "levels", "dropout", "norm")
        return cls(**{k: d[k] for k in names if k in d})

    @property
    def size_divisor(self) -> int:
        return 2 ** (self.levels - 1)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"unknown norm {kind!r}: use 'batch' or 'group'")


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, norm: str, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm1 = _norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = _norm(norm, cout)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.conv1(x)))
        x = self.act(self.norm2(self.conv2(x)))
        return self.drop(x)


class Up(nn.Module):
    def __init__(self, cin: int, cout: int, norm: str, dropout: float):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.block = Block(2 * cout, cout, norm, dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.up(x), skip], dim=1))


class UNet(nn.Module):
    """2D UNet returning logits of shape (B, out_channels, H, W).

    H and W must be multiples of ``size_divisor`` (= 2 ** (levels - 1)); the Sampler pads.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        base_channels: int = 16,
        levels: int = 4,
        dropout: float = 0.2,
        norm: str = "batch",
    ):
        super().__init__()
        if levels < 2:
            raise ValueError("levels must be >= 2")
        self.config = UNetConfig(in_channels, out_channels, base_channels, levels, dropout, norm)
        self.size_divisor = 2 ** (levels - 1)
        chans = [base_channels * 2**i for i in range(levels)]
        self.enc = nn.ModuleList([Block(in_channels, chans[0], norm, dropout)])
        for i in range(1, levels):
            self.enc.append(Block(chans[i - 1], chans[i], norm, dropout))
        self.pool = nn.MaxPool2d(2)
        self.dec = nn.ModuleList(
            [Up(chans[i], chans[i - 1], norm, dropout) for i in range(levels - 1, 0, -1)]
        )
        self.head = nn.Conv2d(chans[0], out_channels, 1)

    @classmethod
    def from_config(cls, config: UNetConfig | dict) -> UNet:
        if isinstance(config, dict):
            config = UNetConfig.from_dict(config)
        return cls(**config.to_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        n = len(self.enc)
        for i, block in enumerate(self.enc):
            x = block(x)
            if i < n - 1:
                skips.append(x)
                x = self.pool(x)
        for up in self.dec:
            x = up(x, skips.pop())
        return self.head(x)


def infer_config_from_state_dict(state: dict, dropout: float = 0.2) -> UNetConfig:
    """Recover a :class:`UNetConfig` from the tensor shapes of a UNet state dict.

    Dropout is not stored in weights: it comes from ``dropout`` (or a sidecar JSON).
    Raises KeyError / ValueError when the keys do not look like this UNet.
    """
    w0 = state["enc.0.conv1.weight"]
    head = state["head.weight"]
    levels = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("enc."))
    norm = "batch" if "enc.0.norm1.running_mean" in state else "group"
    return UNetConfig(
        in_channels=int(w0.shape[1]),
        out_channels=int(head.shape[0]),
        base_channels=int(w0.shape[0]),
        levels=levels,
        dropout=dropout,
        norm=norm,
    )
