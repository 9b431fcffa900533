"""Plain words for what each method guarantees at the chosen error level alpha.

Pure Python (no Qt), shared by the dock widget, the headless demo and the tests. The wording
follows the guarantees stated in the methods' docstrings (docs/methods.md): CRC, AT and COAT bound
the *average* fraction of the lesion the outer band misses and the inner band's average false
positives; CONSIGN and the pixel-wise baseline bound the fraction of *scans* whose true
segmentation lies in the set. The CONSIGN layer shows the set's per-pixel envelope, which is a
visual summary, not itself a guaranteed set.
"""

from __future__ import annotations

#: Display names, in the order the widget lists the methods.
METHOD_LABELS: dict[str, str] = {
    "crc": "CRC",
    "at": "AT",
    "coat": "COAT",
    "consign": "CONSIGN",
    "pixelwise": "Pixel-wise",
}

#: Methods whose displayed bands are a summary of a set of segmentations.
ENVELOPE_METHODS = frozenset({"consign"})

ENVELOPE_NOTE = (
    "The bands shown are the set's per-pixel envelope (union and intersection of its "
    "segmentations): a visual summary, not a guarantee in themselves."
)


def method_label(method: str) -> str:
    """Display name of ``method`` ("coat" -> "COAT"); unknown names are upper-cased."""
    return METHOD_LABELS.get(method, method.upper())


def _pct(x: float) -> str:
    """A percentage without spurious decimals: 0.1 -> "10%", 0.025 -> "2.5%"."""
    v = round(100.0 * float(x), 1)
    return f"{v:.0f}%" if v == int(v) else f"{v:.1f}%"


def guarantee(method: str, alpha: float, beta: float | None = None) -> str:
    """One or two sentences stating ``method``'s guarantee at ``alpha`` in plain words."""
    a, keep = _pct(alpha), _pct(1.0 - float(alpha))
    label = method_label(method)
    if method in ("crc", "at", "coat"):
        how = {
            "crc": "one threshold for every scan",
            "at": "a threshold predicted per slice",
            "coat": "a threshold predicted per slice",
        }[method]
        return (
            f"{label} ({how}): the outer band misses at most {a} of the lesion on average, "
            f"and the inner band's false positives are at most {a} of the lesion's size on "
            "average (over scans like the calibration scans)."
        )
    if method == "consign":
        return (
            f"{label}: the true segmentation lies in the set for at least {keep} of scans "
            f"(matching at least {_pct(beta if beta is not None else 0.9)} of each label). "
            + ENVELOPE_NOTE
        )
    if method == "pixelwise":
        return (
            f"{label}: for at least {keep} of scans, at least "
            f"{_pct(beta if beta is not None else 0.9)} of each label's pixels have their true "
            "label inside their pixel's set."
        )
    return f"{label}: calibrated at error level {float(alpha):g}."


def short_guarantee(method: str, alpha: float) -> str:
    """A compact form for tables and tooltips."""
    a, keep = _pct(alpha), _pct(1.0 - float(alpha))
    if method in ("consign", "pixelwise"):
        return f"set holds the truth in >= {keep} of scans"
    return f"misses <= {a} of the lesion on average"
