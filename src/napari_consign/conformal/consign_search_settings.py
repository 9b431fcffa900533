"""Settings of CONSIGN's membership search and its seeded Latin-hypercube points.

:class:`SearchSettings` validates and holds every knob of
:class:`~.consign_membership.MembershipChecker` (strategy, point counts, Adam and line-scan
parameters, memory budget); invalid values raise :class:`ConformalInputError`.
:func:`lhs_points` gives the reproducible space-filling points both strategies start from;
:class:`StrategyParams` is what a strategy needs besides the boxes (settings resolved for one
checker).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import qmc

from .errors import ConformalInputError


@dataclass(frozen=True)
class SearchSettings:
    """Settings of the membership search (defaults: the fast ``"lines"`` strategy).

    :meth:`authors` gives the authors' medical settings (``"adam"``, 1,000 LHS points, 10
    starts). ``max_steps``, ``patience``, ``lr`` and ``temperature`` apply to ``"adam"``;
    ``sweeps`` to ``"lines"``.
    """

    n_lhs: int = 64
    n_starts: int = 4
    lr: float = 1.0
    max_steps: int = 1000
    patience: int = 50
    temperature: float = 1e-4
    #: skip the search when the closed-form recall bound already rules the box out
    prune: bool = True
    #: float64 elements of one (units x points x D) temporary; None: 2^22 on CPU, 2^26 on CUDA
    max_elements: int | None = None
    strategy: str = "lines"
    #: coordinate-ascent sweeps (each scans the K axes and K oblique directions)
    sweeps: int = 8

    def __post_init__(self) -> None:
        if self.n_lhs < 1 or self.n_starts < 1 or self.n_starts > self.n_lhs:
            raise ConformalInputError("need 1 <= n_starts <= n_lhs Latin-hypercube points")
        if self.max_steps < 0 or self.patience < 1 or self.temperature <= 0 or self.lr <= 0:
            raise ConformalInputError("max_steps >= 0, patience >= 1, lr > 0, temperature > 0")
        if self.max_elements is not None and self.max_elements < 1:
            raise ConformalInputError("max_elements must be positive (or None for the default)")
        if self.strategy not in ("lines", "adam"):
            raise ConformalInputError(
                f"unknown search strategy {self.strategy!r}; use lines or adam"
            )
        if self.sweeps < 0:
            raise ConformalInputError("sweeps must be >= 0")

    @classmethod
    def authors(cls, **changes) -> SearchSettings:
        """The authors' procedure for medical data (docs/methods.md §5.3), with a 1,000-step cap."""
        return cls(**{"strategy": "adam", "n_lhs": 1000, "n_starts": 10, **changes})


def lhs_points(k: int, n: int, seed: int | Sequence[int]) -> np.ndarray:
    """``n`` Latin-hypercube points in ``[0, 1)^k``, reproducible from ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    return qmc.LatinHypercube(d=k, rng=rng).random(n)


@dataclass(frozen=True)
class StrategyParams:
    """What a search strategy needs besides the boxes: the settings, the beta of the hard check,
    the number of classes and the float64 elements one temporary may hold."""

    settings: SearchSettings
    beta: float
    n_classes: int
    budget: int
