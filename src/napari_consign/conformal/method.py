"""ConformalMethod: the one shape every conformal method has (docs/methods.md, "Adding a method").

In the spirit of MAPIE's ``_BaseLTTController``: a method declares what it needs
(``needs_training``, ``reads_samples``, ``reads_image``/``reads_variance``), calibrates on units
with ground truth, and turns one :class:`ScanStats` (the per-scan Monte-Carlo statistics) into
:class:`~.bands.Bands`. Everything outside ``conformal/`` (bundles, evaluation, the CLI, the
widget) talks to methods through this class only, so adding a method is one class plus one
line in :mod:`.registry`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .bands import DEFAULT_ALPHAS, Bands, feasible_alphas
from .dataset import SegmentationSet
from .options import MethodOptions


@dataclass(frozen=True)
class ScanStats:
    """The per-scan (or per-unit-stack) statistics a method reads, on one ``(Z, H, W)`` grid.

    ``mean``: the Monte-Carlo mean foreground probability (the score map); ``var``: its
    per-voxel variance; ``image``: the intensities; ``samples``: the raw samples
    ``(Z, N_s, H, W)`` or their per-slice top-K ``DecompositionStack`` (for methods with
    ``reads_samples``). Absent statistics are None.
    """

    mean: np.ndarray
    var: np.ndarray | None = None
    image: np.ndarray | None = None
    samples: Any = None


def percent(x: float) -> str:
    """A percentage without spurious decimals: 0.1 -> "10%", 0.025 -> "2.5%"."""
    v = round(100.0 * float(x), 1)
    return f"{v:.0f}%" if v == int(v) else f"{v:.1f}%"


class ConformalMethod(ABC):
    """Base of every method: declared requirements, calibration, bands, state, guarantee.

    Subclasses set ``name`` (the registry key) and ``label`` (display name) and implement the
    abstract methods; the defaults fit a method that reads only the score map.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    #: Trains a model (e.g. a threshold predictor) on units disjoint from the calibration units.
    needs_training: ClassVar[bool] = False
    #: Reads the raw MC samples (not only their mean) when calibrated or evaluated on a
    #: :class:`SegmentationSet`: keep them in memory for it.
    reads_samples: ClassVar[bool] = False
    #: The displayed bands summarise a set of segmentations (they are no set themselves).
    envelope: ClassVar[bool] = False

    options: MethodOptions
    n_used: int
    n_empty: int

    # -- requirements ----------------------------------------------------------------------

    @property
    def reads_image(self) -> bool:
        """Whether :meth:`bands` reads ``ScanStats.image``."""
        return False

    @property
    def reads_variance(self) -> bool:
        """Whether :meth:`bands` reads ``ScanStats.var``."""
        return False

    def sample_components(self) -> int | None:
        """Principal components of each slice's samples :meth:`bands` reads (streamed as a
        top-K decomposition), or None when it reads no samples."""
        return None

    def check_samples(self, n_samples: int) -> None:
        """Raise :class:`ConformalInputError` if ``n_samples`` MC samples per slice cannot serve
        this method (checked before any sampling). Default: any number serves."""
        return None

    # -- alpha -----------------------------------------------------------------------------

    @property
    def alpha_grid(self) -> np.ndarray:
        """The error levels :meth:`bands` is built on by default (the slider snaps to them)."""
        return DEFAULT_ALPHAS

    @property
    def alpha_free(self) -> bool:
        """Whether one calibration serves every alpha (a sweep need not recalibrate)."""
        return True

    # -- calibration -----------------------------------------------------------------------

    @abstractmethod
    def calibrate(
        self, cal: SegmentationSet, train: SegmentationSet | None = None, *, cancel: Any = None
    ) -> None:
        """Fit on the calibration units (and ``train``, when ``needs_training``)."""

    def calibrate_stats(
        self,
        cal: ScanStats,
        masks: np.ndarray,
        train: SegmentationSet | None = None,
        *,
        cancel: Any = None,
    ) -> None:
        """Calibrate from streamed per-unit statistics (units stacked on axis 0) and ``masks``.

        The default builds a :class:`SegmentationSet` of the score maps and images; methods
        with ``reads_samples`` override it to use ``cal.samples``.
        """
        self.calibrate(SegmentationSet(None, cal.mean, masks, cal.image), train, cancel=cancel)

    def finish_calibration(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Compute now what a bundle stores and would otherwise be computed on demand; returns
        the number of steps (``progress(done, total)`` per step). Default: nothing to do."""
        return 0

    # -- test time -------------------------------------------------------------------------

    @abstractmethod
    def bands(self, stats: ScanStats, alphas: Sequence[float] | None = None) -> Bands:
        """Bands of one scan (or one 2D unit) on ``alphas`` (default :attr:`alpha_grid`,
        its feasible part)."""

    @abstractmethod
    def predict_masks(
        self, data: SegmentationSet, alpha: float
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(inner, outer)`` boolean masks of every unit of ``data`` at ``alpha``."""

    def summary(self, alpha: float) -> dict[str, float]:
        """Calibrated quantities at ``alpha`` (thresholds, lambda, ...) for reports."""
        return {}

    # -- persistence -----------------------------------------------------------------------

    @abstractmethod
    def to_state(self, alphas: Sequence[float] | None = None) -> dict:
        """A JSON-ready dict of what a calibration bundle needs (``n_used``, ``n_empty`` and the
        method's tables), on ``alphas`` where the method stores per-level values."""

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Plain numeric arrays the bundle stores beside the state (e.g. network weights)."""
        return {}

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict, arrays: dict[str, np.ndarray] | None = None) -> Any:
        """A calibrated method rebuilt from :meth:`to_state` (and :meth:`state_arrays`)."""

    @classmethod
    def check_state(cls, state: dict, arrays: dict[str, np.ndarray]) -> None:
        """Raise :class:`~.state_checks.StateError` naming the first field of a stored state
        that is out of range or inconsistent (``n_used``/``n_empty`` are checked before).
        Default: nothing more to check."""
        return None

    @classmethod
    def state_levels(cls, state: dict) -> list[float]:
        """The alpha levels a (checked) stored state serves bands at, ascending."""
        return [float(a) for a in feasible_alphas(int(state["n_used"]))]

    # -- words -----------------------------------------------------------------------------

    @classmethod
    def guarantee_text(cls, alpha: float, beta: float | None = None) -> str:
        """One or two sentences stating the guarantee at ``alpha`` in plain words."""
        return f"{cls.label or cls.name.upper()}: calibrated at error level {float(alpha):g}."

    @classmethod
    def short_guarantee(cls, alpha: float) -> str:
        """A compact form of :meth:`guarantee_text` for tables and tooltips."""
        return f"misses <= {percent(alpha)} of the lesion on average"

    def guarantee(self, alpha: float) -> str:
        """:meth:`guarantee_text` of this calibrated method (with its own beta, if any)."""
        return self.guarantee_text(alpha, getattr(self, "beta", None))


class AverageRiskMethod(ConformalMethod):
    """A method whose guarantee bounds the *average* loss of both bands (CRC, AT, COAT)."""

    #: How the threshold is chosen, in the guarantee's words.
    how: ClassVar[str] = ""

    @classmethod
    def guarantee_text(cls, alpha: float, beta: float | None = None) -> str:
        a = percent(alpha)
        return (
            f"{cls.label} ({cls.how}): the outer band misses at most {a} of the lesion on "
            f"average, and the inner band's false positives are at most {a} of the lesion's "
            "size on average, a healthy scan with any inner band counting as a whole error "
            "(over scans like the calibration scans)."
        )


#: Said beside the guarantee of a method whose displayed bands are an envelope of its set.
ENVELOPE_NOTE = (
    "The bands shown are the set's per-pixel envelope (union and intersection of its "
    "segmentations): a visual summary, not a guarantee in themselves."
)


class SetCoverageMethod(ConformalMethod):
    """A method whose guarantee is the fraction of scans whose truth lies in the set."""

    @classmethod
    def short_guarantee(cls, alpha: float) -> str:
        return f"set holds the truth in >= {percent(1.0 - float(alpha))} of scans"
