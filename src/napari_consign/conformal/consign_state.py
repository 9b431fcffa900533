"""CONSIGN's calibration state: what a bundle stores, how it is checked and rebuilt.

A mixin of :class:`~.consign.CONSIGN`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .options import MethodOptions
from .state_checks import StateError, check_alphas, count, lambda_tables, numbers


class ConsignState:
    """Persistence of a calibrated CONSIGN (mixed into :class:`~.consign.CONSIGN`)."""

    def to_state(self, alphas: Sequence[float] | None = None) -> dict:
        """What a calibration bundle needs: settings and the per-image lambda_i* tables.

        With ``alphas``, those levels are calibrated first (slow: membership checks).
        """
        if alphas is not None:
            self.calibrate_alphas(alphas)
        return {
            "method": self.name,
            "beta": self.beta,
            "k": self.k,
            "n_classes": self.n_classes,
            "binary": self._binary,
            "lam_step": self.lam_step,
            "lam_max": self.lam_max,
            "n_used": self.n_used,
            "n_empty": self.n_empty,
            "alphas": [float(a) for a in self.alphas],
            "lambda_stars": {str(a): s.tolist() for a, s in self._stars.items()},
        }

    @classmethod
    def from_state(cls, state: dict, arrays: dict[str, np.ndarray] | None = None) -> Any:
        """Rebuild a calibrated CONSIGN (for prediction, not re-calibration) from
        :meth:`to_state`."""
        opts = MethodOptions(beta=state["beta"], k=state["k"])
        self = cls(
            opts, alphas=state["alphas"], lam_step=state["lam_step"], lam_max=state["lam_max"]
        )
        self.n_classes, self._binary = int(state["n_classes"]), bool(state["binary"])
        self.n_used, self.n_empty = int(state["n_used"]), int(state["n_empty"])
        self._stars = {
            round(float(a), 12): np.asarray(s, dtype=np.float64)
            for a, s in state["lambda_stars"].items()
        }
        return self

    @classmethod
    def check_state(cls, state: dict, arrays: dict[str, np.ndarray]) -> None:
        numbers(state.get("beta"), "beta", 1e-12, 1.0)
        stars = state.get("lambda_stars")
        if not isinstance(stars, dict):
            raise StateError("lambda_stars must map alphas to lists")
        count(state, "k", 1)
        numbers(state.get("lam_step"), "lam_step", 1e-12)
        numbers(state.get("lam_max"), "lam_max", 1e-12)
        levels = numbers([float(a) for a in stars], "the CONSIGN alphas")
        check_alphas(np.sort(levels), "CONSIGN", int(state["n_used"]))
        lambda_tables(state, int(state["n_used"]))

    @classmethod
    def state_levels(cls, state: dict) -> list[float]:
        return sorted(float(a) for a in state["lambda_stars"])
