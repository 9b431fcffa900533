"""Plain words for what each method guarantees at the chosen error level alpha.

Pure Python (no Qt), shared by the dock widget, the headless demo and the tests. The words
themselves belong to each method (:meth:`~napari_consign.conformal.ConformalMethod.guarantee_text`,
docs/methods.md); this module looks them up by method name. CRC, AT and COAT bound the
*average* fraction of the lesion the outer band misses and the inner band's average false
positives; CONSIGN and the pixel-wise baseline bound the fraction of *scans* whose true
segmentation lies in the set. The CONSIGN layer shows the set's per-pixel envelope, which is a
visual summary, not itself a guaranteed set.
"""

from __future__ import annotations

from collections.abc import Mapping

from .conformal.method import ENVELOPE_NOTE, ConformalMethod
from .conformal.registry import METHODS, method_class, methods_where

__all__ = [
    "ENVELOPE_METHODS",
    "ENVELOPE_NOTE",
    "METHOD_LABELS",
    "guarantee",
    "method_label",
    "short_guarantee",
]

#: Methods whose displayed bands are a summary of a set of segmentations (a live view).
ENVELOPE_METHODS = methods_where(lambda cls: cls.envelope)


class _Labels(Mapping):
    """Display names of the registered methods, in registry order (a live view)."""

    def __getitem__(self, name: str) -> str:
        if name not in METHODS:
            raise KeyError(name)
        cls = method_class(name)
        return cls.label or name.upper()

    def __iter__(self):
        return iter(list(METHODS))

    def __len__(self) -> int:
        return len(METHODS)


#: Display names, in the order the widget lists the methods.
METHOD_LABELS: Mapping[str, str] = _Labels()


def _class(method: str) -> type[ConformalMethod] | None:
    return method_class(method) if method in METHODS else None


def method_label(method: str) -> str:
    """Display name of ``method`` ("coat" -> "COAT"); unknown names are upper-cased."""
    return METHOD_LABELS.get(method, method.upper())


def guarantee(method: str, alpha: float, beta: float | None = None) -> str:
    """One or two sentences stating ``method``'s guarantee at ``alpha`` in plain words."""
    cls = _class(method)
    if cls is None:
        return f"{method_label(method)}: calibrated at error level {float(alpha):g}."
    return cls.guarantee_text(alpha, beta)


def short_guarantee(method: str, alpha: float) -> str:
    """A compact form for tables and tooltips."""
    cls = _class(method) or ConformalMethod
    return cls.short_guarantee(alpha)
